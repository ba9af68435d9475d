package http_test

import (
	nethttp "net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// BenchmarkQueryOverhead measures what the foundation (access check with a
// key, metrics, consistency middleware, path checks, problem rendering
// machinery) costs on a query, beside a bare Echo handler answering the
// same JSON: the jobs issue asks for at least 60% of the bare rate.
func BenchmarkQueryOverhead(b *testing.B) {
	dev := fjhttp.Device{ID: "d1", Name: "one", TemplateID: "t", Properties: map[string]any{"city": "Seattle"}}
	b.Run("bare-echo", func(b *testing.B) {
		e := echo.New()
		e.GET("/api/v1/devices/:deviceId", func(c echo.Context) error { return c.JSON(200, dev) })
		serve(b, e, nil)
	})
	b.Run("fleetjobs", func(b *testing.B) {
		v := newViews()
		v.devices["d1"] = dev
		s := fjhttp.NewServer(fjhttp.Config{Addr: "127.0.0.1:0", DeviceQueries: v,
			APIKeys: []fjhttp.APIKey{{Key: "k", Role: fjhttp.RoleAuditor}}})
		serve(b, s.Handler(), map[string]string{"Authorization": "Bearer k"})
	})
}

func serve(b *testing.B, h nethttp.Handler, header map[string]string) {
	req := httptest.NewRequest("GET", "/api/v1/devices/d1", nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
