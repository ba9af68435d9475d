package http

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"
)

// ConsistencyTokenHeader carries read-your-writes: every command answer
// sets it to the position of what the command recorded; a query (or a
// command that decides from read models) sent with it waits until the read
// models have applied that position.
const ConsistencyTokenHeader = "Fleetjobs-Consistency-Token"

// DefaultConsistencyWait bounds how long a request waits for the read
// models to reach its consistency token (API.md: at most 5 s).
const DefaultConsistencyWait = 5 * time.Second

// retryAfterSeconds is the Retry-After of a 503 for a token not reached:
// projections apply thousands of events a second, so a second is plenty.
const retryAfterSeconds = "1"

// ConsistencyWaiter is what the HTTP layer needs of the read side for
// read-your-writes (satisfied in cmd by the projection runner, through a
// small adapter that parses the token: http does not import eventstore).
type ConsistencyWaiter interface {
	// WaitFor returns nil once every read model has applied the events up
	// to token (the text of an event-log position, as command answers
	// carry it). It returns an error wrapping ErrMalformedToken if token
	// is not such a text, and ctx's error if ctx ends first.
	WaitFor(ctx context.Context, token string) error
}

// ErrMalformedToken is returned by a ConsistencyWaiter for a token that is
// not one: the request is answered 400, naming the header.
var ErrMalformedToken = errors.New("malformed consistency token")

// ErrNotCaughtUp is a request whose consistency token the read models did
// not reach in time: 503 with Retry-After.
var ErrNotCaughtUp = errors.New("the read models have not caught up with the consistency token yet")

// awaitConsistency is the middleware of routes that honour the token: it
// waits for the read models before the handler runs.
func (s *Server) awaitConsistency(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		token := c.Request().Header.Get(ConsistencyTokenHeader)
		if token == "" || s.waiter == nil {
			// Without a waiter there are no read models to wait for.
			return next(c)
		}
		if err := s.waitFor(c.Request().Context(), token); err != nil {
			return err
		}
		return next(c)
	}
}

func (s *Server) waitFor(parent context.Context, token string) error {
	ctx, cancel := context.WithTimeout(parent, s.consistencyWait)
	defer cancel()
	err := s.waiter.WaitFor(ctx, token)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrMalformedToken):
		return &ValidationError{Fields: []FieldError{{Field: ConsistencyTokenHeader, Message: "is not a token this API returned"}}}
	case ctx.Err() != nil:
		// Our bound expired (or the caller left): the read models are
		// behind, which is what Retry-After is for.
		return fmt.Errorf("%w (waited up to %s for %s)", ErrNotCaughtUp, s.consistencyWait, token)
	default:
		// The projections stopped or failed: still a 503 to the caller,
		// but worth a line in the log.
		s.logger.Warn("waiting for a consistency token failed", zap.String("token", token), zap.Error(err))
		return fmt.Errorf("%w: %w", ErrNotCaughtUp, err)
	}
}

// setConsistencyToken puts token on a command's answer; an empty token
// (nothing recorded) sets nothing.
func setConsistencyToken(c echo.Context, token string) {
	if token != "" {
		c.Response().Header().Set(ConsistencyTokenHeader, token)
	}
}
