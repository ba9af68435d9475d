package http

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"
)

// Check is one readiness probe: GET /readyz answers 200 only when every
// check returns nil within CheckTimeout.
type Check struct {
	Name  string                          // what is checked, e.g. "event log"; named in the 503's detail
	Check func(ctx context.Context) error // nil when the dependency answers
}

// CheckTimeout bounds each readiness check, so that a hung dependency makes
// /readyz answer 503 rather than hang the load balancer's probe.
const CheckTimeout = 2 * time.Second

// Config is what NewServer needs.
type Config struct {
	Addr   string      // host:port to listen on; port 0 picks a free one
	Logger *zap.Logger // nil means no logging
	Checks []Check     // readiness checks, run in order
}

// Server is the HTTP server: Echo routes behind a net/http server that can
// shut down gracefully.
type Server struct {
	echo   *echo.Echo
	http   *http.Server
	ln     net.Listener
	logger *zap.Logger
	checks []Check
	addr   string
	errc   chan error
}

// NewServer builds the server and its routes; Open starts listening.
func NewServer(cfg Config) *Server {
	logger := cfg.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	s := &Server{
		echo:   e,
		logger: logger,
		checks: cfg.Checks,
		addr:   cfg.Addr,
		errc:   make(chan error, 1),
	}
	e.HTTPErrorHandler = s.handleError
	e.Use(s.logRequests)
	s.routes()
	s.http = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(logger.Named("net/http")),
	}
	return s
}

// Handler returns the routes, for tests that do not need a listener.
func (s *Server) Handler() http.Handler { return s.echo }

// Open listens on the configured address and serves in the background. It
// fails at once if the address is taken, so that a misconfigured process
// stops before claiming to run.
func (s *Server) Open() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", s.addr, err)
	}
	s.ln = ln
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errc <- fmt.Errorf("http serve %s: %w", ln.Addr(), err)
		}
		close(s.errc)
	}()
	return nil
}

// Addr is the address the server listens on (with the real port once Open
// succeeded).
func (s *Server) Addr() string {
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.addr
}

// URL is the base URL of the server, http://ADDR.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Err delivers the error that stopped serving, if serving stops on its own;
// it is closed once the server has stopped.
func (s *Server) Err() <-chan error { return s.errc }

// Shutdown stops accepting connections and waits, until ctx ends, for the
// requests in flight to finish; those still running then are cut off.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	if err := s.http.Shutdown(ctx); err != nil {
		_ = s.http.Close()
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

// logRequests logs every request at debug level: at info the log stays quiet.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if ce := s.logger.Check(zap.DebugLevel, "request"); ce != nil {
			status := c.Response().Status
			if err != nil {
				status = ProblemFor(err).Status
			}
			ce.Write(
				zap.String("method", c.Request().Method),
				zap.String("path", c.Request().URL.Path),
				zap.Int("status", status),
				zap.Duration("duration", time.Since(start)),
				zap.String("remote", c.RealIP()),
			)
		}
		return err
	}
}
