package http

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/labstack/echo/v4"

	"github.com/fleetjobs/fleetjobs/commands"
)

// IdempotencyKeyHeader is the request header that names one request
// (draft-ietf-httpapi-idempotency-key-header): see keyedCommandID, and
// newJobID for the requests that create a job under a generated ID.
const IdempotencyKeyHeader = "Idempotency-Key"

// ErrIdempotencyKeyReused is a request that creates something under an ID
// derived from its Idempotency-Key (POST /jobs, a copy) sent with a key
// that another request already created something with: 422 naming the
// header, nothing recorded. The draft says a key reused with another
// payload SHOULD be refused so; here it must be, as the other request
// would otherwise create a second job.
var ErrIdempotencyKeyReused = errors.New("the Idempotency-Key was already used for another request")

// keyReusedMessage is the FieldError message of ErrIdempotencyKeyReused.
const keyReusedMessage = "already used for another request; use a new key for a new request"

// requestBodyKey is where the echo context keeps the request's body
// (noteBody) for keyedCommandID.
const requestBodyKey = "fleetjobs.requestBody"

// noteBody keeps a request's body for keyedCommandID, without copying or
// hashing it: only a request with an Idempotency-Key needs its digest.
// decoded is the value decoded from a JSON body (nil for another body): its
// encoding is digested rather than the bytes, so that a retry that encodes
// the same request with other spacing or key order is the same request.
func noteBody(c echo.Context, raw []byte, decoded any) {
	c.Set(requestBodyKey, requestBody{raw: raw, decoded: decoded})
}

type requestBody struct {
	raw     []byte
	decoded any
}

// digest is what keyedCommandID digests of the body.
func (b requestBody) digest() []byte {
	if b.decoded != nil {
		if canon, err := json.Marshal(b.decoded); err == nil {
			return canon
		}
	}
	return b.raw
}

// keyedCommandID is the command ID of a request sent with an
// Idempotency-Key: the key, a dot and a digest of the request (method,
// route, path parameters and body). The request retried with its key is
// the same command, recorded once; another request under a key already
// used is another command, decided and recorded on its own. (With the key
// alone as the command ID, such a request was taken for a retry of the
// first: it answered 2xx and recorded nothing.) Where the key also names
// what the request creates (newJobID), another request meets what the
// first created and is refused (jobKeyReused).
func keyedCommandID(c echo.Context, key string) string {
	h := sha256.New()
	part := func(s string) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	part(c.Request().Method)
	part(c.Path())
	names, values := c.ParamNames(), c.ParamValues()
	for i, n := range names {
		part(n)
		if i < len(values) {
			part(values[i])
		}
	}
	if b, ok := c.Get(requestBodyKey).(requestBody); ok {
		h.Write(b.digest())
	}
	return key + "." + hex.EncodeToString(h.Sum(nil)[:8])
}

// newJobID is the ID of the job that a request creating one under a
// generated ID (POST /jobs, POST /jobs/{jobId}/copy) creates: derived from
// its Idempotency-Key alone when it sent one, else from its fresh command
// ID. The key alone, not the key and the request (its command ID): the same
// request retried finds the job its first try created, and another request
// under the key meets that job too, instead of creating a second one, and
// is refused (jobKeyReused).
func (s *Server) newJobID(c echo.Context, m CommandMeta) string {
	if key := c.Request().Header.Get(IdempotencyKeyHeader); key != "" {
		return s.jobCommands.NewJobID(key)
	}
	return s.jobCommands.NewJobID(m.CommandID)
}

// jobKeyReused checks the outcome (res, err) of a command that created job
// id under newJobID: with an Idempotency-Key, the job must be this
// request's. Another request under the key meets the job the first one
// created, and is ErrIdempotencyKeyReused, having recorded nothing,
// whether its definition differs (the decision refused it:
// commands.ErrOtherDefinition) or not (it decided nothing, and the job was
// created under another command ID). Any other outcome is returned as it
// is.
func jobKeyReused(c echo.Context, m CommandMeta, id string, res JobResult, err error) error {
	if c.Request().Header.Get(IdempotencyKeyHeader) == "" {
		return err
	}
	switch {
	case errors.Is(err, commands.ErrOtherDefinition):
	case err == nil && !res.Created && res.CreatedBy != m.CommandID:
	default:
		return err
	}
	return fmt.Errorf("%w: it created job %q; use a new key for a new request", ErrIdempotencyKeyReused, id)
}
