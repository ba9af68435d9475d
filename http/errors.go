package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"
)

// Problem is an RFC 9457 problem details body, the shape of every error
// answer (content type application/problem+json).
type Problem struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail,omitempty"`
	Errors []FieldError `json:"errors,omitempty"`
}

// FieldError points at one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError is a request that is well-formed but invalid: 400, with
// one FieldError per problem.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	if len(e.Fields) == 1 {
		return fmt.Sprintf("invalid request: %s: %s", e.Fields[0].Field, e.Fields[0].Message)
	}
	return fmt.Sprintf("invalid request: %d invalid fields", len(e.Fields))
}

// ErrNotReady is returned (wrapped with the failing check) when a
// dependency the service needs does not answer: 503.
var ErrNotReady = errors.New("not ready")

// ProblemTypeBase prefixes every problem type; the suffix is a stable slug
// clients may switch on.
const ProblemTypeBase = "urn:fleetjobs:problem:"

// mapping is one row of the error table.
type mapping struct {
	match  func(error) bool
	status int
	slug   string
	title  string
	// detail says whether err's message may be shown to the caller; internal
	// errors are logged, not echoed.
	detail bool
}

func is(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }

func as[T error]() func(error) bool {
	return func(err error) bool {
		var t T
		return errors.As(err, &t)
	}
}

// errorTable is THE table from error to HTTP status: the first matching row
// wins. Later issues add their domain errors (not found, conflict, stopped
// job...) here and nowhere else.
func errorTable() []mapping {
	return []mapping{
		{as[*ValidationError](), http.StatusBadRequest, "invalid-request", "Invalid request", true},
		{is(ErrNotReady), http.StatusServiceUnavailable, "not-ready", "Service not ready", true},
		{is(context.DeadlineExceeded), http.StatusServiceUnavailable, "timeout", "Timed out", false},
	}
}

// ProblemFor translates err into the problem the caller sees, using the error
// table; Echo's own errors (unknown route, bad method, bad body...) keep
// their status. Anything unknown is a 500 whose detail is withheld.
func ProblemFor(err error) Problem {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		p := Problem{Type: ProblemTypeBase + "http", Title: http.StatusText(he.Code), Status: he.Code}
		if msg, ok := he.Message.(string); ok && msg != http.StatusText(he.Code) {
			p.Detail = msg
		}
		return p
	}
	for _, m := range errorTable() {
		if !m.match(err) {
			continue
		}
		p := Problem{Type: ProblemTypeBase + m.slug, Title: m.title, Status: m.status}
		if m.detail {
			p.Detail = err.Error()
		}
		var ve *ValidationError
		if errors.As(err, &ve) {
			p.Errors = ve.Fields
		}
		return p
	}
	return Problem{Type: ProblemTypeBase + "internal", Title: "Internal error", Status: http.StatusInternalServerError}
}

// writeProblem renders p as application/problem+json.
func writeProblem(c echo.Context, p Problem) error {
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return c.Blob(p.Status, "application/problem+json", body)
}

// handleError is Echo's error handler: every error a handler returns ends
// here, is translated once, and is logged only if it is the server's fault.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		s.logger.Debug("error after the response started", zap.Error(err))
		return
	}
	p := ProblemFor(err)
	// 503s (a dependency not ready yet) are expected while starting and
	// are reported to the caller; only the server's own failures are logged.
	if p.Status >= http.StatusInternalServerError && p.Status != http.StatusServiceUnavailable {
		s.logger.Error("request failed",
			zap.String("method", c.Request().Method),
			zap.String("path", c.Request().URL.Path),
			zap.Int("status", p.Status),
			zap.Error(err))
	}
	if werr := writeProblem(c, p); werr != nil {
		s.logger.Debug("write problem", zap.Error(werr))
	}
}
