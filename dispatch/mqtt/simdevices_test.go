package mqtt_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetjobs/fleetjobs/dispatch/mqtt"
)

// The simulated devices of the MQTT load benchmark run in a child process
// (this test binary, re-executed): 10,000 device connections and the
// broker's 10,000 accepted sockets would not fit one process's limit of
// open files.
const (
	// simDevicesEnv holds the broker's address: set, the test binary plays
	// the devices instead of running tests.
	simDevicesEnv = "FLEETJOBS_BENCH_MQTT_SIM_BROKER"
	// simKeysEnv names the file of the devices to play, "ID KEY" a line.
	simKeysEnv = "FLEETJOBS_BENCH_MQTT_SIM_KEYS"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(simDevicesEnv); addr != "" {
		os.Exit(runSimDevices(addr, os.Getenv(simKeysEnv)))
	}
	os.Exit(m.Run())
}

// resultOK is every simulated device's answer.
var resultOK = []byte(`{"status":"succeeded"}`)

// runSimDevices connects every device of keysFile to the broker at addr, as
// the device (client ID and username its ID, password its key), subscribed
// to its job topic; prints "ready" on stdout; then answers every job
// delivered with success, at QoS 1, until stdin closes. It returns the
// process's exit status.
func runSimDevices(addr, keysFile string) int {
	data, err := os.ReadFile(keysFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	lines := strings.Fields(string(data))
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := 0; i+1 < len(lines); i += 2 {
		id, key := lines[i], lines[i+1]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			rc, err := rawDial(addr, id, id, []byte(key), 512)
			if err == nil {
				if err = rc.subscribe(mqtt.JobFilter(id), 1); err != nil {
					rc.Close()
				}
			}
			if err != nil {
				mu.Lock()
				firstErr = cmpOr(firstErr, fmt.Errorf("device %s: %w", id, err))
				mu.Unlock()
				return
			}
			go simDevice(rc)
		})
	}
	wg.Wait()
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, firstErr)
		return 1
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// simDevice answers every job delivered on rc until the connection ends.
func simDevice(rc *rawConn) {
	defer rc.Close()
	for {
		first, body, err := rc.readPacket()
		if err != nil {
			return
		}
		if first>>4 == pktPublish { // else a PUBACK of one of its answers
			topic, id, _, err := parsePublish(first, body)
			if err != nil {
				return
			}
			if id != 0 {
				rc.puback(id)
			}
			rc.publish(topic+"/result", resultOK, 1)
		}
		// Send what is buffered once nothing more has been read: after any
		// packet, not only after a job (a job and a PUBACK read together,
		// PUBACK last, would otherwise leave the job's answer unsent until
		// the next job came).
		if rc.r.Buffered() == 0 {
			if rc.Flush() != nil {
				return
			}
		}
	}
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// mustSimDevices runs the devices ids (keys from b) in a child process and
// waits until all are connected and subscribed; the test's end stops it.
func mustSimDevices(tb testing.TB, b backend, ids []string) {
	tb.Helper()
	var keys strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&keys, "%s %s\n", id, b.keyFor(id))
	}
	file := filepath.Join(tb.TempDir(), "keys")
	if err := os.WriteFile(file, []byte(keys.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), simDevicesEnv+"="+strings.TrimPrefix(b.url, "mqtt://"), simKeysEnv+"="+file)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("simulated devices said %q", line)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, stdout)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	select {
	case err := <-ready:
		if err != nil {
			tb.Fatalf("simulated devices: %v", err)
		}
	case <-ctx.Done():
		tb.Fatalf("simulated devices not connected after 5 minutes")
	}
}
