package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain"
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

// Error summarises the problems; Fields has the details.
func (e *ValidationError) Error() string {
	if len(e.Fields) == 1 {
		return fmt.Sprintf("invalid request: %s: %s", e.Fields[0].Field, e.Fields[0].Message)
	}
	return fmt.Sprintf("invalid request: %d invalid fields", len(e.Fields))
}

// ErrNotReady is returned (wrapped with the failing check) when a
// dependency the service needs does not answer: 503.
var ErrNotReady = errors.New("not ready")

// ErrUnavailable is a request that a dependency did not answer (the read
// models' Redis down, say): 503 with Retry-After, the caller may try again;
// /readyz names the cause. Implementations wrap it with what did not
// answer.
var ErrUnavailable = errors.New("unavailable, try again later")

// unavailableRetryAfter is the Retry-After of ErrUnavailable: an outage
// lasts longer than a read model's lag.
const unavailableRetryAfter = "5"

// StatusClientClosedRequest is the answer to a request whose client went
// away before it was answered (nginx's 499, "client closed request").
// Nobody reads it; it is there for the access log and the metrics, where
// a client hanging up must count neither as the server's failure (5xx,
// which pages someone) nor as the service being unavailable (503, which
// says "try again later" to a caller that is no longer there).
const StatusClientClosedRequest = 499

// errClientGone marks the error of a request whose own context ended
// (handleError adds it): the client hung up, so whatever failed, failed
// because nobody waits for the answer any more.
var errClientGone = errors.New("the client went away before the answer")

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
	// retryAfter, if set, is sent as the Retry-After header (seconds).
	retryAfter string
}

func is(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }

func as[T error]() func(error) bool {
	return func(err error) bool {
		var t T
		return errors.As(err, &t)
	}
}

// errorTable is THE table from error to HTTP status: the first matching row
// wins. The domain's refusals come by their code (domainCode); every other
// error a handler may return has its row here and nowhere else.
func errorTable() []mapping {
	return []mapping{
		{match: is(errClientGone), status: StatusClientClosedRequest, slug: "client-closed-request", title: "Client closed request"},
		{match: as[*ValidationError](), status: http.StatusBadRequest, slug: "invalid-request", title: "Invalid request", detail: true},
		{match: as[*ImportError](), status: http.StatusUnprocessableEntity, slug: "import-refused", title: "Import refused: nothing was recorded", detail: true},
		{match: is(ErrIdempotencyKeyReused), status: http.StatusUnprocessableEntity, slug: "idempotency-key-reused", title: "Idempotency-Key reused: nothing was recorded", detail: true},
		{match: domainCode(domain.CodeInvalid), status: http.StatusBadRequest, slug: "invalid-request", title: "Invalid request", detail: true},
		{match: domainCode(domain.CodeNotFound), status: http.StatusNotFound, slug: "not-found", title: "Not found", detail: true},
		{match: domainCode(domain.CodeConflict), status: http.StatusConflict, slug: "conflict", title: "Conflict", detail: true},
		{match: is(ErrUnauthenticated), status: http.StatusUnauthorized, slug: "unauthenticated", title: "Unauthenticated", detail: true},
		{match: is(ErrForbidden), status: http.StatusForbidden, slug: "forbidden", title: "Forbidden", detail: true},
		{match: is(ErrNotFound), status: http.StatusNotFound, slug: "not-found", title: "Not found", detail: true},
		{match: is(ErrConflict), status: http.StatusConflict, slug: "conflict", title: "Conflict", detail: true},
		{match: is(ErrTooLarge), status: http.StatusRequestEntityTooLarge, slug: "too-large", title: "Request body too large", detail: true},
		{match: is(commands.ErrTooLargeToRecord), status: http.StatusRequestEntityTooLarge, slug: "too-large", title: "Request too large to record", detail: true},
		{match: is(ErrUnsupportedMediaType), status: http.StatusUnsupportedMediaType, slug: "unsupported-media-type", title: "Unsupported media type", detail: true},
		{match: is(ErrNotCaughtUp), status: http.StatusServiceUnavailable, slug: "not-caught-up", title: "Read models not caught up", detail: true, retryAfter: retryAfterSeconds},
		{match: is(ErrNotReady), status: http.StatusServiceUnavailable, slug: "not-ready", title: "Service not ready", detail: true},
		{match: is(ErrUnavailable), status: http.StatusServiceUnavailable, slug: "unavailable", title: "Service unavailable", detail: true, retryAfter: unavailableRetryAfter},
		// The command handler closed: the service is shutting down. Another
		// instance, or this one restarted, takes the command: unavailable.
		{match: is(commands.ErrClosed), status: http.StatusServiceUnavailable, slug: "unavailable", title: "Service unavailable", detail: true, retryAfter: unavailableRetryAfter},
		{match: is(context.DeadlineExceeded), status: http.StatusServiceUnavailable, slug: "timeout", title: "Timed out"},
		// Cancelled, but not by the client (that is errClientGone): the
		// service cancelled its own work, which it does when it shuts down.
		{match: is(context.Canceled), status: http.StatusServiceUnavailable, slug: "unavailable", title: "Service unavailable", retryAfter: unavailableRetryAfter},
	}
}

// domainCode matches the domain's errors by their code: the domain says
// what kind of refusal it is, this table says which status that is.
func domainCode(code domain.Code) func(error) bool {
	return func(err error) bool { return domain.ErrorCode(err) == code }
}

// ErrNotFound is a resource that does not exist (or no longer does): 404.
// Query and command implementations wrap it, naming what was missing.
var ErrNotFound = errors.New("not found")

// ErrConflict is a command that contradicts what is recorded (another body
// under an existing id, a concurrent change that retries did not resolve):
// 409. Implementations wrap it with a sentence the caller understands.
var ErrConflict = errors.New("conflict")

// ImportError refuses a whole import: every bad row is listed, with
// fields like "rows[12].name", and nothing is recorded: 422. The import
// handler returns it for rows that do not parse; an ImportDevices
// implementation returns it for rows the domain refuses (an unknown
// template, a property of the wrong schema).
type ImportError struct {
	Fields []FieldError
}

// Error summarises the refusal; Fields has the details.
func (e *ImportError) Error() string {
	if len(e.Fields) == 1 {
		return fmt.Sprintf("import refused: %s: %s", e.Fields[0].Field, e.Fields[0].Message)
	}
	return fmt.Sprintf("import refused: %d problems in the rows", len(e.Fields))
}

// ProblemFor translates err into the problem the caller sees, using the error
// table; Echo's own errors (unknown route, bad method, bad body...) keep
// their status. Anything unknown is a 500 whose detail is withheld.
func ProblemFor(err error) Problem {
	p, _ := problemFor(err)
	return p
}

// problemFor is ProblemFor and the table row that matched (zero for
// Echo's errors and the 500).
func problemFor(err error) (Problem, mapping) {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		p := Problem{Type: ProblemTypeBase + "http", Title: http.StatusText(he.Code), Status: he.Code}
		if msg, ok := he.Message.(string); ok && msg != http.StatusText(he.Code) {
			p.Detail = msg
		}
		return p, mapping{}
	}
	for _, m := range errorTable() {
		if !m.match(err) {
			continue
		}
		p := Problem{Type: ProblemTypeBase + m.slug, Title: m.title, Status: m.status}
		if m.detail {
			p.Detail = err.Error()
			if de, ok := domain.AsError(err); ok {
				// The domain's own words, which name what they refuse:
				// the wrapping adds where it was decided (stream names
				// such as "job-fan-1200"), which is for logs, not callers.
				p.Detail = de.Error()
			}
		}
		p.Errors = fieldsOf(err)
		return p, m
	}
	return Problem{Type: ProblemTypeBase + "internal", Title: "Internal error", Status: http.StatusInternalServerError}, mapping{}
}

// fieldsOf is the fields an error blames, whichever layer named them.
func fieldsOf(err error) []FieldError {
	var ve *ValidationError
	var ie *ImportError
	switch {
	case errors.As(err, &ve):
		return ve.Fields
	case errors.As(err, &ie):
		return ie.Fields
	case errors.Is(err, ErrTooLarge):
		// Every bad input names its field: an oversized body's
		// field is the body itself.
		return []FieldError{{Field: bodyField, Message: err.Error()}}
	case errors.Is(err, ErrIdempotencyKeyReused):
		return []FieldError{{Field: IdempotencyKeyHeader, Message: keyReusedMessage}}
	case errors.Is(err, ErrUnsupportedMediaType):
		return []FieldError{{Field: "Content-Type", Message: err.Error()}}
	case errors.Is(err, commands.ErrTooLargeToRecord):
		// A body under the HTTP limit can still make an event over the
		// event store's append limit.
		return []FieldError{{Field: bodyField, Message: err.Error()}}
	}
	if de, ok := domain.AsError(err); ok && len(de.Fields) > 0 {
		fields := make([]FieldError, len(de.Fields))
		for i, f := range de.Fields {
			fields[i] = FieldError{Field: f.Field, Message: f.Message}
		}
		return fields
	}
	return nil
}

// writeProblem renders p as application/problem+json.
func writeProblem(c echo.Context, p Problem) error {
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return c.Blob(p.Status, MIMEProblem, body)
}

// handleError is Echo's error handler: every error a handler returns ends
// here, is translated once, and is logged only if it is the server's fault.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		s.logger.Debug("error after the response started", zap.Error(err))
		return
	}
	if c.Request().Context().Err() != nil {
		// The client hung up (net/http cancels a request's context when
		// its connection closes): nobody reads the answer, and the error
		// (a cancelled wait, a cancelled read) is the hang-up's echo, not
		// the server's failure.
		err = fmt.Errorf("%w: %w", errClientGone, err)
	}
	p, m := problemFor(err)
	if p.Status == http.StatusInternalServerError && s.unavailable(err) {
		p, m = problemFor(fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	if p.Status == StatusClientClosedRequest {
		s.logger.Debug("request abandoned by its client",
			zap.String("method", c.Request().Method),
			zap.String("path", c.Request().URL.Path),
			zap.Error(err))
	}
	if m.retryAfter != "" {
		c.Response().Header().Set("Retry-After", m.retryAfter)
	}
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
