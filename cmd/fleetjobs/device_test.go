package main_test

import (
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/dispatch"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// agentProc is a running `fleetjobs device`.
type agentProc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
	err            error
}

// MustStartDevice starts `fleetjobs device` with args; the test's end kills
// it if it still runs.
func MustStartDevice(tb testing.TB, bin string, args ...string) *agentProc {
	tb.Helper()
	return MustStartDeviceEnv(tb, bin, nil, args...)
}

// MustStartDeviceEnv is MustStartDevice with the FLEETJOBS_* variables env
// (NAME=value) and no others.
func MustStartDeviceEnv(tb testing.TB, bin string, env []string, args ...string) *agentProc {
	tb.Helper()
	p := &agentProc{cmd: exec.Command(bin, append([]string{"device"}, args...)...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = baseEnv(env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	tb.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if tb.Failed() {
			tb.Logf("device %v:\nstdout:\n%s\nstderr:\n%s", args, p.stdout.String(), p.stderr.String())
		}
	})
	return p
}

// TestDeviceCommand runs `fleetjobs device` against serve's embedded
// broker: agents that succeed, fail (--fail) and never answer (--ignore)
// print their job and answer it; SIGINT exits 0; a wrong key exits 1 with
// a message, bad usage exits 2.
func TestDeviceCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := MustBuild(t)
	m := MustServe(t, MQTTServeConfig(t, broker{name: "embedded"}), nil)
	ds := []fleetDevice{{"cli-ok", "ok"}, {"cli-bad", "fail"}, {"cli-off", "ignore"}}
	api, token, keys := MustMQTTFleet(t, m.HTTPURL(), ds)
	url := m.MQTTURL()

	for _, tc := range []struct {
		name    string
		args    []string
		mention string
	}{
		{"no id", []string{"device", "--key", "k"}, "--id"},
		{"no key", []string{"device", "--id", "cli-ok"}, "--key"},
		{"fail and ignore", []string{"device", "--id", "cli-ok", "--key", "k", "--fail", "x", "--ignore"}, "exclude"},
		{"bad broker", []string{"device", "--id", "cli-ok", "--key", "k", "--broker", "http://x"}, "--broker"},
		{"positional", []string{"device", "--id", "cli-ok", "--key", "k", "now"}, `"now"`},
		{"bad id", []string{"device", "--id", "bad id", "--key", "k"}, "--id"},
		{"port out of range", []string{"device", "--id", "cli-ok", "--key", "k", "--broker", "mqtt://127.0.0.1:99999"}, "--broker"},
	} {
		r := MustRun(t, bin, nil, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.mention) {
			t.Errorf("%s: exit %d, stderr %q; want 2 mentioning %s", tc.name, r.code, r.stderr, tc.mention)
		}
	}
	if r := MustRun(t, bin, nil, "device", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Usage: fleetjobs device") {
		t.Errorf("device --help: exit %d, stdout %q", r.code, r.stdout)
	}
	r := MustRun(t, bin, nil, "device", "--id", "cli-ok", "--key", "wrong", "--broker", url)
	if r.code != 1 || !strings.Contains(r.stderr, "refused") || !strings.Contains(r.stderr, "--key") {
		t.Errorf("a wrong key: exit %d, stderr %q; want 1 saying the key was refused", r.code, r.stderr)
	}

	agents := map[string]*agentProc{
		"cli-ok":  MustStartDevice(t, bin, "--id", "cli-ok", "--key", keys["cli-ok"], "--broker", url),
		"cli-bad": MustStartDevice(t, bin, "--id", "cli-bad", "--key", keys["cli-bad"], "--broker", url, "--fail", "compressor fault"),
		"cli-off": MustStartDevice(t, bin, "--id", "cli-off", "--key", keys["cli-off"], "--broker", url, "--ignore"),
	}
	for id, a := range agents {
		MustPoll(t, id+" connected", func() bool { return strings.Contains(a.stdout.String(), "waiting for jobs") })
	}
	MustCreateSimJob(t, api, token, "j-cli", 2, 0)
	j := MustJobEnds(t, api, "j-cli")
	l := MustDecode[fjhttp.List[fjhttp.JobDevice]](t, MustStatus(t, Do(t, http.MethodGet, api+"/jobs/j-cli/devices", nil, nil), http.StatusOK))
	got := map[string]string{}
	for _, d := range l.Items {
		got[d.DeviceID] = d.Status + " " + d.Error
	}
	want := map[string]string{"cli-ok": "succeeded ", "cli-bad": "failed compressor fault", "cli-off": "failed " + dispatch.TimedOut(2)}
	if diff := cmp.Diff(want, got); diff != "" || j.Status != "failed" {
		t.Errorf("job %s; device statuses (-want +got):\n%s", j.Status, diff)
	}
	for id, says := range map[string]string{"cli-ok": "answering succeeded", "cli-bad": "answering failed: compressor fault", "cli-off": "not answering"} {
		out := agents[id].stdout.String()
		if !strings.Contains(out, "job j-cli (setting") || !strings.Contains(out, says) || !strings.Contains(out, "  fanSpeed = 1200\n") {
			t.Errorf("%s printed:\n%s\nwant the job, %q and its operation", id, out, says)
		}
	}
	for id, a := range agents {
		if err := a.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still runs 10 s after SIGINT", id)
		}
		if a.err != nil {
			t.Errorf("%s after SIGINT: %v, want exit 0", id, a.err)
		}
	}
}

// TestDeviceExitsWhenItsKeyIsReplaced: a connected `fleetjobs device` whose
// key is replaced (POST /devices/{id}:issueKey disconnects it, and the
// broker refuses the old key at its reconnection) exits 1 saying the key
// was refused, rather than retry it forever.
func TestDeviceExitsWhenItsKeyIsReplaced(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := MustBuild(t)
	m := MustServe(t, MQTTServeConfig(t, broker{name: "embedded"}), nil)
	_, _, keys := MustMQTTFleet(t, m.HTTPURL(), []fleetDevice{{"cli-rekeyed", "ok"}})
	a := MustStartDevice(t, bin, "--id", "cli-rekeyed", "--key", keys["cli-rekeyed"], "--broker", m.MQTTURL())
	MustPoll(t, "cli-rekeyed connected", func() bool { return strings.Contains(a.stdout.String(), "waiting for jobs") })

	MustStatus(t, Do(t, http.MethodPost, m.HTTPURL()+fjhttp.APIBase+"/devices/cli-rekeyed:issueKey", nil, nil), http.StatusOK)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the device still runs 30 s after its key was replaced")
	}
	var exit *exec.ExitError
	if !errors.As(a.err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", a.err)
	}
	if s := a.stderr.String(); !strings.Contains(s, "refused") || !strings.Contains(s, "issueKey") {
		t.Errorf("stderr %q, want it to say the key was refused and how to get a new one", s)
	}
}

// TestDeviceBrokerDefaultsToServes: without --broker, `fleetjobs device`
// connects to the broker serve's variables name: FLEETJOBS_MQTT_ADDR (on
// loopback when it names every address), and FLEETJOBS_MQTT_URL before it,
// without the service's credentials in that URL.
func TestDeviceBrokerDefaultsToServes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := MustBuild(t)
	m := MustServe(t, MQTTServeConfig(t, broker{name: "embedded"}), nil)
	_, _, keys := MustMQTTFleet(t, m.HTTPURL(), []fleetDevice{{"by-addr", "ok"}, {"by-url", "ok"}})
	brokerURL := m.MQTTURL()
	port := brokerURL[strings.LastIndexByte(brokerURL, ':')+1:]

	for _, tc := range []struct {
		id  string
		env []string
	}{
		{"by-addr", []string{"FLEETJOBS_MQTT_ADDR=0.0.0.0:" + port}},
		{"by-url", []string{"FLEETJOBS_MQTT_URL=mqtt://fleetjobs-service:secret@127.0.0.1:" + port, "FLEETJOBS_MQTT_ADDR=127.0.0.1:1"}},
	} {
		a := MustStartDeviceEnv(t, bin, tc.env, "--id", tc.id, "--key", keys[tc.id])
		MustPoll(t, tc.id+" connected", func() bool {
			select {
			case <-a.done:
				t.Fatalf("%s exited: %v\n%s", tc.id, a.err, a.stderr.String())
			default:
			}
			return strings.Contains(a.stdout.String(), "waiting for jobs")
		})
		if out := a.stdout.String(); !strings.Contains(out, "connected to mqtt://127.0.0.1:"+port+";") || strings.Contains(out, "secret") {
			t.Errorf("%s with %v printed %q, want connected to mqtt://127.0.0.1:%s, without credentials", tc.id, tc.env, out, port)
		}
	}
}
