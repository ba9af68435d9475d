package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"pgregory.net/rapid"

	"github.com/fleetjobs/fleetjobs/eventstore"
)

// TestValidJSONIsJSONValid: the export's validity check agrees with
// json.Valid on any data made of JSON pieces, and appendJSONString with
// json.Marshal on any string.
func TestValidJSONIsJSONValid(t *testing.T) {
	pieces := []string{`{`, `}`, `[`, `]`, `"a"`, `"k"`, `"b\"c"`, `"é"`, `:`, `,`, `0`, `01`, `-`, `-7`, `12`, `1.5`, `true`, `fals`, `null`, ` `, "\t", `"`}
	rapid.Check(t, func(t *rapid.T) {
		data := strings.Join(rapid.SliceOfN(rapid.SampledFrom(pieces), 0, 12).Draw(t, "pieces"), "")
		if got, want := validJSON([]byte(data)), json.Valid([]byte(data)); got != want {
			t.Fatalf("validJSON(%s) = %v, json.Valid: %v", data, got, want)
		}
		s := rapid.String().Draw(t, "s")
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("appendJSONString(%q) = %s, json.Marshal: %s", s, got, want)
		}
	})
}

// referenceLine is the NDJSON line of e as export wrote it with the
// standard library alone (json.Marshal of strings, json.Valid, json.Compact of values
// with line breaks, uuid and Position String): the fast writer must write
// the same bytes.
func referenceLine(e *esdb.RecordedEvent) string {
	b := []byte(`{"stream":`)
	st, _ := json.Marshal(e.StreamID)
	b = append(b, st...)
	b = append(b, `,"revision":`...)
	b = strconv.AppendUint(b, e.EventNumber, 10)
	b = append(b, `,"position":"`...)
	b = append(b, eventstore.Position{Commit: e.Position.Commit, Prepare: e.Position.Prepare}.String()...)
	b = append(b, `","id":"`...)
	b = append(b, e.EventID.String()...)
	b = append(b, `","type":`...)
	t, _ := json.Marshal(e.EventType)
	b = append(b, t...)
	compact := func(v []byte) []byte {
		if !bytes.ContainsAny(v, "\r\n") {
			return v
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			panic(err)
		}
		return buf.Bytes()
	}
	if e.ContentType == "application/json" && json.Valid(e.Data) && len(e.Data) > 0 {
		b = append(b, `,"contentType":"application/json","data":`...)
		b = append(b, compact(e.Data)...)
	} else {
		b = append(b, `,"contentType":"application/octet-stream","data":"`...)
		b = append(b, base64.StdEncoding.EncodeToString(e.Data)...)
		b = append(b, '"')
	}
	b = append(b, `,"metadata":`...)
	if len(e.UserMetadata) > 0 && e.UserMetadata[0] != '"' && json.Valid(e.UserMetadata) {
		b = append(b, compact(e.UserMetadata)...)
	} else {
		b = append(b, '"')
		b = append(b, base64.StdEncoding.EncodeToString(e.UserMetadata)...)
		b = append(b, '"')
	}
	b = append(b, `,"recordedAt":"`...)
	b = e.CreatedDate.UTC().AppendFormat(b, time.RFC3339Nano)
	return string(append(b, "\"}\n"...))
}

// TestExportLineIsTheReference: export writes every event, JSON or not,
// plain or needing escapes, one after the other (sharing recorded times),
// exactly as referenceLine does.
func TestExportLineIsTheReference(t *testing.T) {
	pieces := []string{`{`, `}`, `[`, `]`, `"a"`, `"k"`, `"b\"c"`, `"é"`, `:`, `,`, `0`, `-7`, `1.5`, `true`, `null`, ` `, "\n", "\r\n", `"`}
	jsonish := rapid.Custom(func(t *rapid.T) []byte {
		return []byte(strings.Join(rapid.SliceOfN(rapid.SampledFrom(pieces), 0, 12).Draw(t, "pieces"), ""))
	})
	stream := rapid.SampledFrom([]string{"job-1", "device-dev-0001", "a\"b", `c\d`, "tab\there", "é-stream", "bell\a", "<&>", "\xff"})
	rapid.Check(t, func(t *rapid.T) {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		x := &exporter{w: w}
		var want strings.Builder
		base := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
		for i := range rapid.IntRange(1, 8).Draw(t, "events") {
			e := &esdb.RecordedEvent{
				EventID:      uuid.UUID(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "id")),
				EventType:    rapid.SampledFrom([]string{"JobStarted", "a<b", "q\"", "ü"}).Draw(t, "type"),
				ContentType:  rapid.SampledFrom([]string{"application/json", "application/octet-stream"}).Draw(t, "contentType"),
				StreamID:     stream.Draw(t, "stream"),
				EventNumber:  rapid.Uint64().Draw(t, "revision"),
				Position:     esdb.Position{Commit: uint64(i) << 40, Prepare: rapid.Uint64().Draw(t, "prepare")},
				CreatedDate:  base.Add(time.Duration(rapid.IntRange(0, 2).Draw(t, "created")) * 1234567 * time.Nanosecond).In(time.FixedZone("X", 3600)),
				Data:         jsonish.Draw(t, "data"),
				UserMetadata: jsonish.Draw(t, "metadata"),
			}
			if err := x.write(e); err != nil {
				t.Fatal(err)
			}
			want.WriteString(referenceLine(e))
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := out.String(); got != want.String() {
			t.Fatalf("export wrote\n%s\nwant\n%s", got, want.String())
		}
		for _, line := range strings.SplitAfter(out.String(), "\n") {
			if line != "" && !json.Valid([]byte(line)) {
				t.Fatalf("export wrote a line that is not JSON: %q", line)
			}
		}
	})
}

// TestValidJSONDeepNesting: values nested deeper than the fast path
// follows are still checked, by json.Valid.
func TestValidJSONDeepNesting(t *testing.T) {
	for _, depth := range []int{maxPlainDepth, maxPlainDepth + 1, 10 * maxPlainDepth} {
		v := strings.Repeat("[", depth) + strings.Repeat("]", depth)
		if !validJSON([]byte(v)) {
			t.Errorf("depth %d: validJSON = false, want true", depth)
		}
		if validJSON([]byte(v[1:])) {
			t.Errorf("depth %d, unbalanced: validJSON = true, want false", depth)
		}
	}
}

// BenchmarkExportLine writes the line of a typical event of the log (a
// device's result, "small") and of a JobDevicesTargeted of 1,000 devices
// ("large"): "export" with the export's writer, "reference" with
// referenceLine, the standard library's way, in the same run.
//
//	go test -run '^$' -bench ExportLine ./cmd/fleetjobs
func BenchmarkExportLine(b *testing.B) {
	var devices strings.Builder
	for i := range 1000 {
		if i > 0 {
			devices.WriteByte(',')
		}
		devices.WriteString(`{"deviceId":"dev-` + strconv.Itoa(1000000+i) + `","name":"Boiler ` + strconv.Itoa(i) + `"}`)
	}
	md := []byte(`{"commandId":"cmd-job-bench-0003","correlationId":"corr-job-bench-0003","causationId":"cmd-job-bench-0003","actor":"dispatcher","occurredAt":"2026-11-01T00:01:43.019Z"}`)
	events := map[string]*esdb.RecordedEvent{
		"small": {EventType: "DeviceOperationSucceeded", Data: []byte(`{"jobId":"bench-0003","deviceId":"dev-0017659"}`)},
		"large": {EventType: "JobDevicesTargeted", Data: []byte(`{"jobId":"bench-0003","devices":[` + devices.String() + `]}`)},
	}
	for _, size := range []string{"small", "large"} {
		e := events[size]
		e.EventID = uuid.MustParse("63d000a7-632c-e94f-0000-00000001926c")
		e.ContentType = "application/json"
		e.StreamID = "job-bench-0003"
		e.EventNumber = 6709
		e.Position = esdb.Position{Commit: 100001, Prepare: 100001}
		e.CreatedDate = time.Date(2026, 11, 25, 23, 28, 36, 309105900, time.UTC)
		e.UserMetadata = md
		b.Run(size+"/export", func(b *testing.B) {
			x := &exporter{w: bufio.NewWriter(io.Discard)}
			for range b.N {
				if err := x.write(e); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(size+"/reference", func(b *testing.B) {
			w := bufio.NewWriter(io.Discard)
			for range b.N {
				if _, err := w.WriteString(referenceLine(e)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
