package http

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/google/uuid"
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

// Config is what NewServer needs. Only Addr is required: every
// dependency left nil leaves its routes out (the server then still serves
// health, metrics and the OpenAPI document).
type Config struct {
	Addr   string      // host:port to listen on; port 0 picks a free one
	Logger *zap.Logger // nil means no logging
	Checks []Check     // readiness checks, run in order

	// APIKeys are the accepted keys. With none, every request is allowed,
	// and Open refuses an address that is not loopback (CheckListenAddr).
	APIKeys []APIKey

	// Metrics is the registry /metrics serves; nil means a new one. cmd
	// passes its own to register other packages' gauges before or after.
	Metrics *Metrics

	// Waiter makes requests carrying a consistency token wait for the read
	// models; nil means the header is ignored (no read models to wait for).
	Waiter ConsistencyWaiter
	// ConsistencyWait bounds that wait; 0 means DefaultConsistencyWait.
	ConsistencyWait time.Duration

	// MaxBodyBytes bounds JSON bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxImportBytes bounds POST /devices:import; 0 means
	// DefaultMaxImportBytes.
	MaxImportBytes int64

	// DeviceCommands and DeviceQueries serve the template, device and
	// device-set routes; each set of routes is registered only when its
	// dependency is given.
	DeviceCommands DeviceCommands
	DeviceQueries  DeviceQueries

	// JobCommands, JobQueries and JobHistory serve the job routes, each
	// set registered only when its dependency is given.
	JobCommands JobCommands
	JobQueries  JobQueries
	JobHistory  JobHistory

	// Now is the clock (request timing); nil means time.Now.
	Now func() time.Time
	// NewID draws command IDs for requests without an Idempotency-Key;
	// nil means random UUIDs.
	NewID func() string

	// Unavailable tells an error of a dependency that did not answer (the
	// read models' Redis down) from other failures: an error that no row
	// of the error table matches and for which it is true is answered as
	// ErrUnavailable (503 with Retry-After) rather than 500. nil: none is.
	Unavailable func(error) bool
}

// Server is the HTTP server: Echo routes behind a net/http server that can
// shut down gracefully.
type Server struct {
	echo    *echo.Echo
	http    *http.Server
	ln      net.Listener
	logger  *zap.Logger
	checks  []Check
	addr    string
	errc    chan error
	keys    keyring
	metrics *Metrics
	binder  binder
	now     func() time.Time
	newID   func() string
	// unavailable is Config.Unavailable, never nil.
	unavailable func(error) bool

	waiter          ConsistencyWaiter
	consistencyWait time.Duration
	maxBody         int64
	maxImport       int64
	devices         DeviceCommands
	queries         DeviceQueries
	jobCommands     JobCommands
	jobQueries      JobQueries
	history         JobHistory

	// web is the embedded web page's files by name (loadWebAssets).
	web map[string]webAsset

	// routes lists what routes() registered, in order, and routeLabels
	// maps method and Echo path to the OpenAPI-style template used as the
	// metrics label. Both are written only while building the server.
	routeList   []Route
	routeLabels map[routeKey]string
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
		echo:            e,
		logger:          logger,
		checks:          cfg.Checks,
		addr:            cfg.Addr,
		errc:            make(chan error, 1),
		keys:            newKeyring(cfg.APIKeys),
		metrics:         cfg.Metrics,
		now:             cfg.Now,
		newID:           cfg.NewID,
		unavailable:     cfg.Unavailable,
		waiter:          cfg.Waiter,
		consistencyWait: cmpOr(cfg.ConsistencyWait, DefaultConsistencyWait),
		maxBody:         cmpOr(cfg.MaxBodyBytes, DefaultMaxBodyBytes),
		maxImport:       cmpOr(cfg.MaxImportBytes, DefaultMaxImportBytes),
		devices:         cfg.DeviceCommands,
		queries:         cfg.DeviceQueries,
		jobCommands:     cfg.JobCommands,
		jobQueries:      cfg.JobQueries,
		history:         cfg.JobHistory,
		routeLabels:     make(map[routeKey]string),
	}
	if s.metrics == nil {
		s.metrics = NewMetrics()
	}
	if s.now == nil {
		s.now = defaultNow
	}
	if s.newID == nil {
		s.newID = uuid.NewString
	}
	if s.unavailable == nil {
		s.unavailable = func(error) bool { return false }
	}
	web, err := loadWebAssets()
	if err != nil {
		// The files are embedded at build time: only a file added with an
		// extension webContentType does not know gets here, and every
		// test that builds a server says so.
		panic(err)
	}
	s.web = web
	e.HTTPErrorHandler = s.handleError
	e.Use(s.observe, checkQuery)
	s.routes()
	s.http = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(logger.Named("net/http")),
	}
	return s
}

func cmpOr[T int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Handler returns the routes, for tests that do not need a listener.
func (s *Server) Handler() http.Handler { return s.echo }

// Open listens on the configured address and serves in the background. It
// fails at once if the address is taken, so that a misconfigured process
// stops before claiming to run, and refuses (ErrExposed) an address beyond
// loopback when no API keys are configured.
func (s *Server) Open() error {
	if err := CheckListenAddr(s.addr, !s.keys.empty()); err != nil {
		return err
	}
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
