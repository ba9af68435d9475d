package http

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/labstack/echo/v4"
)

// The operator's web page: plain HTML, CSS and JavaScript modules, embedded
// in the binary (no build step) and served at "/" (the page) and under
// "/ui/" (its assets). It holds no data: everything it shows it asks the
// JSON API for, from the browser, with the operator's API key. So serving
// it needs no key, and it is not part of the API (nor of the OpenAPI
// document).

//go:embed web
var webFiles embed.FS

// webDir is the folder of webFiles that holds the page.
const webDir = "web"

// WebAssetPrefix is where the page's assets are served: /ui/NAME serves
// web/NAME.
const WebAssetPrefix = "/ui/"

// webIndex is the page served at "/".
const webIndex = "index.html"

// WebContentSecurityPolicy is the Content-Security-Policy of the page and
// its assets: scripts, styles, images and API calls from this origin only,
// so no inline script or style runs (a device error that slipped into the
// markup could not execute), nothing may frame the page (its Stop button
// cannot be clickjacked), and no form is ever submitted natively (the API
// key field never lands in a URL, even if the script failed to load).
const WebContentSecurityPolicy = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// webContentType is the type of a file of the page, by its extension: an
// explicit table rather than the system's MIME database, which differs
// between machines. A file of another extension is not served (and fails
// the server's construction, so that a test catches it).
func webContentType(name string) (string, bool) {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8", true
	case ".css":
		return "text/css; charset=utf-8", true
	case ".js":
		return "text/javascript; charset=utf-8", true
	case ".svg":
		return "image/svg+xml", true
	}
	return "", false
}

// webAsset is one embedded file, ready to serve.
type webAsset struct {
	body        []byte
	contentType string
	etag        string // a strong validator: the digest of body
}

// loadWebAssets reads the embedded page once, when the server is built:
// each file by its name below web/, with its type and ETag.
func loadWebAssets() (map[string]webAsset, error) {
	assets := make(map[string]webAsset)
	root, err := fs.Sub(webFiles, webDir)
	if err != nil {
		return nil, err
	}
	err = fs.WalkDir(root, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := webContentType(name)
		if !ok {
			return fmt.Errorf("web page file %s: no content type for its extension", name)
		}
		body, err := fs.ReadFile(root, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		assets[name] = webAsset{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load the embedded web page: %w", err)
	}
	return assets, nil
}

// webPage is GET /.
func (s *Server) webPage(c echo.Context) error { return s.sendWebAsset(c, webIndex) }

// webAssetHandler is GET /ui/*: a file of the page, or 404.
func (s *Server) webAssetHandler(c echo.Context) error {
	name := c.Param("*")
	if _, ok := s.web[name]; !ok {
		return fmt.Errorf("%s%s: no such file of the web page: %w", WebAssetPrefix, name, ErrNotFound)
	}
	return s.sendWebAsset(c, name)
}

// sendWebAsset answers with one embedded file. The files change only with
// the binary, so a browser may keep them but must revalidate (no-cache):
// after an upgrade it gets the new page at once, and until then a 304.
func (s *Server) sendWebAsset(c echo.Context, name string) error {
	a, ok := s.web[name]
	if !ok {
		return fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	h := c.Response().Header()
	h.Set("Content-Security-Policy", WebContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	if etagMatches(c.Request().Header.Get("If-None-Match"), a.etag) {
		return c.NoContent(http.StatusNotModified)
	}
	return c.Blob(http.StatusOK, a.contentType, a.body)
}

// etagMatches reports whether an If-None-Match header names etag (or is
// "*"), comparing weakly as RFC 9110 says for If-None-Match.
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}
