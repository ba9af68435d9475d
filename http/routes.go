package http

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// APIBase is the base path of the API (API.md).
const APIBase = "/api/v1"

// routes registers every route, in one place. Each says who may call it;
// queries honour the consistency token. Dependency-backed routes exist only
// when their dependency was configured.
func (s *Server) routes() {
	s.handle(http.MethodGet, "/healthz", accessOpen, s.healthz)
	s.handle(http.MethodGet, "/readyz", accessOpen, s.readyz)
	s.handle(http.MethodGet, "/metrics", accessOpen, s.metricsHandler())
	s.handle(http.MethodGet, APIBase+"/openapi.json", accessOpen, s.openAPI)
	// The operator's web page (web.go) holds no data, so it is open; the
	// API calls it makes carry the operator's key. Not part of the JSON
	// API: Route.Page keeps it out of the OpenAPI document.
	s.handlePage("/", s.webPage)
	s.handlePage(WebAssetPrefix+"*", s.webAssetHandler)

	if s.devices != nil {
		s.handle(http.MethodPut, APIBase+"/device-templates/:templateId", accessCommand, s.putTemplate)
		s.handle(http.MethodDelete, APIBase+"/device-templates/:templateId", accessCommand, s.deleteTemplate, refuseBody)
		s.handle(http.MethodPut, APIBase+"/devices/:deviceId", accessCommand, s.putDevice)
		s.handle(http.MethodDelete, APIBase+"/devices/:deviceId", accessCommand, s.deleteDevice, refuseBody)
		s.handleAs(http.MethodPost, APIBase+"/devices/:deviceId", APIBase+"/devices/{deviceId}"+issueKeySuffix, accessCommand, s.issueDeviceKey, refuseBody)
		// The colon of "devices:import" is escaped: unescaped, Echo would
		// read it as a path parameter named "import".
		s.handle(http.MethodPost, APIBase+`/devices\:import`, accessCommand, s.importDevices)
		s.handle(http.MethodPut, APIBase+"/device-sets/:setId", accessCommand, s.putDeviceSet)
		s.handle(http.MethodDelete, APIBase+"/device-sets/:setId", accessCommand, s.deleteDeviceSet, refuseBody)
	}
	if s.queries != nil {
		s.handle(http.MethodGet, APIBase+"/device-templates", accessRead, s.listTemplates, s.awaitConsistency)
		s.handle(http.MethodGet, APIBase+"/device-templates/:templateId", accessRead, s.getTemplate, s.awaitConsistency)
		s.handle(http.MethodGet, APIBase+"/devices", accessRead, s.listDevices, s.awaitConsistency)
		s.handle(http.MethodGet, APIBase+"/devices/:deviceId", accessRead, s.getDevice, s.awaitConsistency)
		s.handle(http.MethodGet, APIBase+"/device-sets", accessRead, s.listDeviceSets, s.awaitConsistency)
		s.handle(http.MethodGet, APIBase+"/device-sets/:setId", accessRead, s.getDeviceSet, s.awaitConsistency)
		s.handle(http.MethodGet, APIBase+"/device-sets/:setId/devices", accessRead, s.listSetMembers, s.awaitConsistency)
	}
	if s.jobCommands != nil {
		// Creating a job decides from the read models (the set's
		// members), so it honours the consistency token like a query:
		// "import devices, then create a job" includes them.
		s.handle(http.MethodPut, APIBase+"/jobs/:jobId", accessCommand, s.putJob, s.awaitConsistency)
		s.handle(http.MethodPost, APIBase+"/jobs", accessCommand, s.postJob, s.awaitConsistency)
		s.handle(http.MethodPost, APIBase+"/jobs/:jobId/copy", accessCommand, s.copyJob, s.awaitConsistency)
		s.handle(http.MethodPost, APIBase+"/jobs/:jobId/stop", accessCommand, s.stopJob)
		s.handle(http.MethodPost, APIBase+"/jobs/:jobId/devices/:deviceId/result", accessCommand, s.postResult)
	}
	if s.jobQueries != nil {
		s.handle(http.MethodGet, APIBase+"/jobs", accessRead, s.listJobs, s.awaitConsistency)
		s.handle(http.MethodGet, APIBase+"/jobs/:jobId", accessRead, s.getJob, s.awaitConsistency)
		s.handle(http.MethodGet, APIBase+"/jobs/:jobId/devices", accessRead, s.listJobDevices, s.awaitConsistency)
		s.handle(http.MethodGet, APIBase+"/summary", accessRead, s.summary, s.awaitConsistency)
	}
	if s.history != nil {
		// The history is read from the event log itself, which is always
		// current: no consistency wait.
		s.handle(http.MethodGet, APIBase+"/jobs/:jobId/history", accessRead, s.jobHistory)
	}
}

// Route is one registered route, its path written as in the OpenAPI
// document ("/api/v1/devices/{deviceId}").
type Route struct {
	Method string
	Path   string
	// Page marks the web page's routes ("/" and its assets under /ui/):
	// HTML, CSS and JavaScript for browsers, not the JSON API, so the
	// OpenAPI document leaves them out.
	Page bool
}

// Routes lists the registered routes, in registration order. The HEAD of
// every GET route is registered too but not listed (handleAs).
func (s *Server) Routes() []Route { return append([]Route(nil), s.routeList...) }

// handle registers one route: access check first, then the route's own
// middleware (consistency waits), then the handler.
func (s *Server) handle(method, path string, a access, h echo.HandlerFunc, mw ...echo.MiddlewareFunc) {
	s.handleAs(method, path, openAPIPath(path), a, h, mw...)
}

// handleAs is handle for a route whose OpenAPI path is not its Echo path
// (a parameter followed by a ":verb", which the handler parses).
func (s *Server) handleAs(method, path, tmpl string, a access, h echo.HandlerFunc, mw ...echo.MiddlewareFunc) {
	s.add(Route{Method: method, Path: tmpl}, path, a, h, mw...)
}

// handlePage registers a route of the web page, GET and HEAD (curl -I, link
// checkers): open to anyone.
func (s *Server) handlePage(path string, h echo.HandlerFunc) {
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		s.add(Route{Method: m, Path: openAPIPath(path), Page: true}, path, accessOpen, h)
	}
}

// add registers r at Echo path path, and lists and labels it.
func (s *Server) add(r Route, path string, a access, h echo.HandlerFunc, mw ...echo.MiddlewareFunc) {
	mws := append([]echo.MiddlewareFunc{s.authorize(a)}, mw...)
	s.echo.Add(r.Method, path, h, mws...)
	s.routeList = append(s.routeList, r)
	s.routeLabels[routeKey{r.Method, path}] = r.Path
	if r.Method == http.MethodGet && !r.Page {
		// Every GET also answers HEAD (RFC 9110 9.3.2: the same status
		// and headers, no body; net/http drops the body written). It is
		// implied, not listed in Routes or the OpenAPI document. The
		// page's routes list their HEAD themselves (handlePage).
		s.echo.Add(http.MethodHead, path, h, mws...)
		s.routeLabels[routeKey{http.MethodHead, path}] = r.Path
	}
}

// routeKey identifies a route as Echo knows it.
type routeKey struct{ method, path string }

// openAPIPath turns an Echo path into an OpenAPI template: ":name"
// becomes "{name}", an escaped "\:" a plain colon.
func openAPIPath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p) && p[i+1] == ':':
			b.WriteByte(':')
			i++
		case p[i] == ':':
			j := i + 1
			for j < len(p) && p[j] != '/' {
				j++
			}
			b.WriteString("{" + p[i+1:j] + "}")
			i = j - 1
		default:
			b.WriteByte(p[i])
		}
	}
	return b.String()
}

// routeError gives the router's bare 404 and 405 (no route for the path,
// or not for the method) a detail that says what was asked and where the
// routes are listed; any other error is returned as it is.
func routeError(c echo.Context, err error) error {
	r := c.Request()
	switch {
	case errors.Is(err, echo.ErrNotFound):
		return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("no route for %s %s; the routes are listed in %s/openapi.json", r.Method, r.URL.Path, APIBase))
	case errors.Is(err, echo.ErrMethodNotAllowed):
		return echo.NewHTTPError(http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s; the Allow header lists the methods of its route", r.Method, r.URL.Path))
	}
	return err
}

// status is the body of the health endpoints' success answers.
type status struct {
	Status string `json:"status"`
}

// healthz answers 200 while the process lives: it checks nothing else, so a
// slow dependency never gets a healthy process restarted.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, status{Status: "ok"})
}

// readyz answers 200 when every readiness check passes, else 503 naming the
// first failing one.
func (s *Server) readyz(c echo.Context) error {
	for _, chk := range s.checks {
		if err := runCheck(c.Request().Context(), chk); err != nil {
			return fmt.Errorf("%s: %w: %w", chk.Name, ErrNotReady, err)
		}
	}
	return c.JSON(http.StatusOK, status{Status: "ready"})
}

func runCheck(ctx context.Context, chk Check) error {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	return chk.Check(ctx)
}
