package http

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Metrics is one server's Prometheus registry (never the global one, so
// two servers in one test process do not collide): the HTTP layer's
// request counters and latency histograms, the Go runtime and process
// collectors, and whatever other packages register through GaugeFunc and
// CounterFunc (projection lag, events applied, ...). Those packages do not
// import http: they declare the one-method interface they need, which
// *Metrics satisfies, or cmd hands their accessors to these methods.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics returns a registry holding the HTTP and runtime metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetjobs_http_requests_total",
			Help: "HTTP requests answered, by route template, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fleetjobs_http_request_duration_seconds",
			Help: "Time to answer HTTP requests, by route template, method and status.",
			// From well under a millisecond (a cached read) to the 5 s a
			// consistency wait may take.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "status"}),
	}
	m.reg.MustRegister(m.requests, m.latency,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// GaugeFunc registers a gauge whose value is fn's answer at each scrape
// (projection lag, for example). name must be a valid, unregistered
// Prometheus metric name, else the error says why.
func (m *Metrics) GaugeFunc(name, help string, fn func() float64) error {
	if err := m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn)); err != nil {
		return fmt.Errorf("register gauge %s: %w", name, err)
	}
	return nil
}

// CounterFunc registers a counter whose value is fn's answer at each
// scrape; fn must never decrease (events applied, for example).
func (m *Metrics) CounterFunc(name, help string, fn func() float64) error {
	if err := m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn)); err != nil {
		return fmt.Errorf("register counter %s: %w", name, err)
	}
	return nil
}

// Register adds any Prometheus collector, for metrics with labels.
func (m *Metrics) Register(c prometheus.Collector) error {
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("register collector: %w", err)
	}
	return nil
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// unmatchedRoute labels requests no route matched, so that scanners
// probing random paths cannot grow the label set without bound.
const unmatchedRoute = "unmatched"

// otherMethod labels requests whose method is none of the standard ones
// (methodLabel).
const otherMethod = "other"

// methodLabel is the method label of a request: its method if standard,
// else otherMethod. HTTP allows any token as a method, and a client (even
// one without a key: the count comes before the access check's answer)
// must not grow the label set without bound.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return otherMethod
}

// observe is the outermost middleware: it renders a handler's error (so
// that the status is final), then counts and times the request by route
// template and logs it at debug level; at info the log stays quiet.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := s.now()
		if err := next(c); err != nil {
			c.Error(routeError(c, err))
		}
		elapsed := s.now().Sub(start)
		route, ok := s.routeLabels[routeKey{c.Request().Method, c.Path()}]
		if !ok {
			route = unmatchedRoute
		}
		status := c.Response().Status
		code := strconv.Itoa(status)
		method := methodLabel(c.Request().Method)
		s.metrics.requests.WithLabelValues(route, method, code).Inc()
		s.metrics.latency.WithLabelValues(route, method, code).Observe(elapsed.Seconds())
		if ce := s.logger.Check(zap.DebugLevel, "request"); ce != nil {
			ce.Write(
				zap.String("method", c.Request().Method),
				zap.String("path", c.Request().URL.Path),
				zap.String("route", route),
				zap.Int("status", status),
				zap.Duration("duration", elapsed),
				zap.String("remote", c.RealIP()),
			)
		}
		return nil
	}
}

// metricsHandler serves GET /metrics.
func (s *Server) metricsHandler() echo.HandlerFunc {
	h := s.metrics.Handler()
	return echo.WrapHandler(h)
}

// defaultNow is the clock when Config has none.
func defaultNow() time.Time { return time.Now() }
