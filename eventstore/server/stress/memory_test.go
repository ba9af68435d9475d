package stress_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
)

// rssBytes is the resident set size of process pid, from /proc/PID/status.
func rssBytes(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse VmRSS %q: %w", rest, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS line")
}

// rssSampler records the peak RSS of a process until stopped. Sampling on a
// ticker is a measurement, not a wait for a condition.
type rssSampler struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func startRSSSampler(pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	sample := func() {
		if v, err := rssBytes(pid); err == nil && v > s.peak.Load() {
			s.peak.Store(v)
		}
	}
	sample()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				sample()
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the peak.
func (s *rssSampler) Stop() int64 {
	close(s.stop)
	<-s.done
	return s.peak.Load()
}

const mib = 1 << 20

// TestReadingALongStreamKeepsServerMemoryBounded appends one long stream
// (1,000,000 events; 100,000 with -short or -race) to a store in a child
// process, then reads it back forwards in one read through the client while
// sampling the child's RSS: a server that materialises a read (or lets an
// unbounded send queue grow in front of the client) grows by roughly the
// stream's size, about 250 MiB at the full size. The bound is a resource
// limit, not a timing: the samples only catch the peak.
func TestReadingALongStreamKeepsServerMemoryBounded(t *testing.T) {
	if _, err := rssBytes(os.Getpid()); err != nil {
		t.Skipf("no /proc RSS on this system: %v", err)
	}
	total := 1_000_000
	if testing.Short() || raceEnabled {
		total = 100_000
	}
	const maxGrowth = 200 * mib
	child := MustStartChild(t, t.TempDir())
	c := MustClient(t, child.addr)
	const stream = "memory-long"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	rssStart, err := rssBytes(child.Pid())
	if err != nil {
		t.Fatal(err)
	}
	appendSampler := startRSSSampler(child.Pid())
	appendStart := time.Now()
	mustAppendLongStream(t, ctx, c, stream, total)
	appendTook := time.Since(appendStart)
	appendPeak := appendSampler.Stop()

	rssBefore, err := rssBytes(child.Pid())
	if err != nil {
		t.Fatal(err)
	}
	readSampler := startRSSSampler(child.Pid())
	readStart := time.Now()
	rs, err := c.ReadStream(ctx, stream, esdb.ReadStreamOptions{From: esdb.Start{}}, math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	next := uint64(0)
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read after %d events: %v", next, err)
		}
		if got := ev.OriginalEvent().EventNumber; got != next {
			t.Fatalf("event %d has revision %d", next, got)
		}
		next++
	}
	readTook := time.Since(readStart)
	readPeak := readSampler.Stop()
	if next != uint64(total) {
		t.Errorf("read %d events, want %d", next, total)
	}
	t.Logf("%d events: child RSS %d MiB at start, peak %d MiB while appending, %d MiB before the read, peak %d MiB while reading",
		total, rssStart/mib, appendPeak/mib, rssBefore/mib, readPeak/mib)
	// Throughput for information only: these machines are too noisy to
	// assert on it.
	t.Logf("appended in %v (%.0f events/s), read in %v (%.0f events/s)",
		appendTook.Round(time.Millisecond), float64(total)/appendTook.Seconds(),
		readTook.Round(time.Millisecond), float64(total)/readTook.Seconds())
	if raceEnabled {
		// The race detector's shadow memory grows with every byte the
		// server touches (5-10x): RSS says nothing about the server then.
		t.Logf("race detector on: RSS bound not checked")
	} else if growth := readPeak - rssBefore; growth > maxGrowth {
		t.Errorf("server RSS grew by %d MiB while one client read the stream, want < %d MiB", growth/mib, maxGrowth/mib)
	}
	child.MustStop(t)
}

// mustAppendLongStream appends total events to stream, 1,000 per append from
// 4 writers (Any), so a million events go in within seconds.
func mustAppendLongStream(t *testing.T, ctx context.Context, c *esdb.Client, stream string, total int) {
	t.Helper()
	const batch = 1000
	data := payload("memory", 0)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Bool
	for w := range 4 {
		wg.Go(func() {
			for !failed.Load() {
				end := next.Add(batch)
				start := end - batch
				if start >= int64(total) {
					return
				}
				events := make([]esdb.EventData, min(end, int64(total))-start)
				for i := range events {
					events[i] = esdb.EventData{EventID: uuid.New(), EventType: "MemoryEvent", ContentType: esdb.ContentTypeJson, Data: data}
				}
				if _, err := c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{}, events...); err != nil {
					failed.Store(true)
					t.Errorf("writer %d: append at %d: %v", w, start, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		t.FailNow()
	}
}
