package http_test

import (
	"strings"
	"testing"

	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

func TestMetricsCountRequestsByRouteTemplate(t *testing.T) {
	m := fjhttp.NewMetrics()
	applied := 0.0
	if err := m.CounterFunc("fleetjobs_projection_events_applied_total", "Events applied to the read models.", func() float64 { return applied }); err != nil {
		t.Fatal(err)
	}
	if err := m.GaugeFunc("fleetjobs_projection_lag_events", "Events recorded but not yet applied.", func() float64 { return 3 }); err != nil {
		t.Fatal(err)
	}
	if err := m.GaugeFunc("fleetjobs_projection_lag_events", "again", func() float64 { return 0 }); err == nil {
		t.Error("registering a metric twice succeeded")
	}
	s, _, _ := MustOpenAPI(t, fjhttp.Config{Metrics: m})
	applied = 42
	MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/devices/d1"})
	MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/devices/d2"})
	MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/devices:import", Header: map[string]string{"Content-Type": "text/csv"}, Body: "deviceId,name,templateId\nd1,n,t\n"})
	MustDo(t, s.URL(), Request{Method: "GET", Path: "/no/such/route/1"})
	MustDo(t, s.URL(), Request{Method: "GET", Path: "/no/such/route/2"})

	a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/metrics"})
	if a.Code != 200 || !strings.HasPrefix(a.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("status %d, content type %q", a.Code, a.Header.Get("Content-Type"))
	}
	text := string(a.Body)
	for _, want := range []string{
		`fleetjobs_http_requests_total{method="GET",route="/api/v1/devices/{deviceId}",status="404"} 2`,
		`fleetjobs_http_requests_total{method="POST",route="/api/v1/devices:import",status="200"} 1`,
		`fleetjobs_http_requests_total{method="GET",route="unmatched",status="404"} 2`,
		`fleetjobs_http_request_duration_seconds_count{method="GET",route="/api/v1/devices/{deviceId}",status="404"} 2`,
		`fleetjobs_projection_events_applied_total 42`,
		`fleetjobs_projection_lag_events 3`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestEachServerHasItsOwnRegistry(t *testing.T) {
	// Two servers in one process: with a global registry the second would
	// fail to register its metrics, or count the first one's requests.
	s1, _, _ := MustOpenAPI(t, fjhttp.Config{})
	s2, _, _ := MustOpenAPI(t, fjhttp.Config{})
	MustDo(t, s1.URL(), Request{Method: "GET", Path: "/healthz"})
	a := MustDo(t, s2.URL(), Request{Method: "GET", Path: "/metrics"})
	if strings.Contains(string(a.Body), `route="/healthz"`) {
		t.Error("the second server counts the first one's requests")
	}
}

// TestMetricsMethodLabelIsBounded: a request with a made-up method, even
// without a key, is counted under method "other", never under its own name.
func TestMetricsMethodLabelIsBounded(t *testing.T) {
	s, _, _ := MustOpenAPI(t, fjhttp.Config{APIKeys: []fjhttp.APIKey{{Key: "op-key-0123456789", Role: fjhttp.RoleOperator}}})
	for _, m := range []string{"EVIL1", "EVIL2", "get"} {
		MustDo(t, s.URL(), Request{Method: m, Path: "/api/v1/jobs"})
	}
	MustDo(t, s.URL(), Request{Method: "PATCH", Path: "/healthz"})
	text := string(MustDo(t, s.URL(), Request{Method: "GET", Path: "/metrics"}).Body)
	for _, bad := range []string{`method="EVIL1"`, `method="EVIL2"`, `method="get"`} {
		if strings.Contains(text, bad) {
			t.Errorf("metrics hold %s", bad)
		}
	}
	for _, want := range []string{
		`fleetjobs_http_requests_total{method="other",route="unmatched",status="405"} 3`,
		`fleetjobs_http_requests_total{method="PATCH",route="unmatched",status="405"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(text, "fleetjobs_http_requests_total"))
		}
	}
}

func grep(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
