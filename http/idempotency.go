package http

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/labstack/echo/v4"
)

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
// first: it answered 2xx and recorded nothing.)
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
