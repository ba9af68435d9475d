package job_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/fleetjobs/fleetjobs/domain/job"
)

const millionDevices = 1_000_000

// millionDeviceIDs are IDs as a device registry would make them.
func millionDeviceIDs() []job.TargetedDevice {
	out := make([]job.TargetedDevice, millionDevices)
	for i := range out {
		out[i] = job.TargetedDevice{DeviceID: fmt.Sprintf("vm-%07d", i), Name: fmt.Sprintf("Vending machine %d", i)}
	}
	return out
}

// heapInUse returns the heap in use after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkMillionDeviceJob folds a job of 1,000,000 devices (JobCreated
// and 1,000 JobDevicesTargeted events), then records a result for every
// device in batches of 1,000 (Decide of RecordResults + Evolve of each
// event: what the per-job worker of the command path does), 1% failing.
// It reports the heap the job's state holds at the end (MiB, target under
// 64) and the results decided and evolved per second.
//
//	go test -run '^$' -bench MillionDeviceJob -benchtime 3x ./domain/job
func BenchmarkMillionDeviceJob(b *testing.B) {
	members := millionDeviceIDs()
	create := job.Create{
		JobID: jobID, Name: "Fan speed", DeviceSetID: "seattle", Type: job.TypeSetting,
		Operations: []job.Operation{{Name: "fanSpeed", Value: 1200}},
		Set:        seattle(), Template: vending(), Members: members,
	}
	targeting, err := job.Decide(nil, create)
	if err != nil {
		b.Fatal(err)
	}
	const batchSize = 1000
	batches := make([][]job.DeviceResult, 0, millionDevices/batchSize)
	for start := 0; start < millionDevices; start += batchSize {
		batch := make([]job.DeviceResult, batchSize)
		for i := range batch {
			batch[i] = job.DeviceResult{DeviceID: members[start+i].DeviceID, Status: job.DeviceSucceeded}
			if (start+i)%100 == 0 {
				batch[i].Status, batch[i].Error = job.DeviceFailed, "timed out"
			}
		}
		batches = append(batches, batch)
	}

	var stateMiB, foldSeconds, resultsPerSecond float64
	for b.Loop() {
		b.StopTimer()
		before := heapInUse()
		b.StartTimer()

		t0 := time.Now()
		s := job.Fold(append(append([]job.Event{}, targeting...), job.Started{JobID: jobID}))
		t1 := time.Now()
		for _, batch := range batches {
			events, err := job.Decide(s, job.RecordResults{JobID: jobID, Results: batch})
			if err != nil {
				b.Fatal(err)
			}
			for _, ev := range events {
				s = job.Evolve(s, ev)
			}
		}
		t2 := time.Now()

		b.StopTimer()
		if s.Status != job.StatusFailed || s.Counts().Failed != millionDevices/100 {
			b.Fatalf("after every result: %s with %+v", s.Status, s.Counts())
		}
		stateMiB = float64(heapInUse()-before) / (1 << 20)
		runtime.KeepAlive(s)
		foldSeconds = t1.Sub(t0).Seconds()
		resultsPerSecond = millionDevices / t2.Sub(t1).Seconds()
		b.StartTimer()
	}
	b.ReportMetric(stateMiB, "MiB")
	b.ReportMetric(foldSeconds, "fold-s")
	b.ReportMetric(resultsPerSecond, "results/s")
}

// BenchmarkMillionDeviceIndexAsMap is the baseline the compact state is
// measured against: the obvious map[string]int32 index of a million device
// IDs (strings of their own, as decoded events hold them), without any
// status. It reports its heap in MiB.
//
//	go test -run '^$' -bench MillionDeviceIndexAsMap -benchtime 3x ./domain/job
func BenchmarkMillionDeviceIndexAsMap(b *testing.B) {
	var mib float64
	for b.Loop() {
		b.StopTimer()
		before := heapInUse()
		b.StartTimer()
		index := make(map[string]int32)
		for i := range millionDevices {
			index[fmt.Sprintf("vm-%07d", i)] = int32(i)
		}
		b.StopTimer()
		mib = float64(heapInUse()-before) / (1 << 20)
		runtime.KeepAlive(index)
		b.StartTimer()
	}
	b.ReportMetric(mib, "MiB")
}
