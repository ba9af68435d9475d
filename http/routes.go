package http

import (
	"context"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"
)

// routes registers every route, in one place.
func (s *Server) routes() {
	s.echo.GET("/healthz", s.healthz)
	s.echo.GET("/readyz", s.readyz)
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
