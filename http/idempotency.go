package http

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/labstack/echo/v4"
)

// bodyDigestKey is where the echo context keeps the digest of the request's
// body (noteBody) for keyedCommandID.
const bodyDigestKey = "fleetjobs.bodyDigest"

// noteBody keeps the digest of a request's body for keyedCommandID: of the
// value decoded from a JSON body, re-encoded (so a retry that encodes the
// same request with other spacing or key order is the same request), or of
// the bytes of any other body.
func noteBody(c echo.Context, raw []byte, decoded any) {
	b := raw
	if decoded != nil {
		if canon, err := json.Marshal(decoded); err == nil {
			b = canon
		}
	}
	sum := sha256.Sum256(b)
	c.Set(bodyDigestKey, sum[:])
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
	if d, ok := c.Get(bodyDigestKey).([]byte); ok {
		h.Write(d)
	}
	return key + "." + hex.EncodeToString(h.Sum(nil)[:8])
}
