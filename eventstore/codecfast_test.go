package eventstore

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// resultLike has the shape of the catalog's device results.
type resultLike struct {
	JobID    string `json:"jobId"`
	DeviceID string `json:"deviceId"`
	Error    string `json:"error"`
}

// TestStringFieldsDecodeAsEncodingJSON: for any data made of JSON pieces
// around the type's keys, the codec's decode of an all-string type returns
// what encoding/json does, error or not.
func TestStringFieldsDecodeAsEncodingJSON(t *testing.T) {
	if _, ok := fastFieldsOf(reflect.TypeFor[resultLike](), true); !ok {
		t.Fatal("resultLike has no fast decoder")
	}
	reg := Register[resultLike]("ResultLike")
	pieces := []string{`{`, `}`, `"jobId"`, `"deviceId"`, `"error"`, `"JOBID"`, `"x"`, `:`, `,`, `"a"`, `"b\"c"`, `"é"`, `1`, `null`, ` `, `[]`}
	rapid.Check(t, func(t *rapid.T) {
		var data string
		if rapid.Bool().Draw(t, "wellFormed") {
			var kv []string
			for _, k := range rapid.SliceOfN(rapid.SampledFrom([]string{"jobId", "deviceId", "error", "JobId", "other"}), 0, 5).Draw(t, "keys") {
				kv = append(kv, `"`+k+`":`+rapid.SampledFrom([]string{`"v1"`, `"v2"`, `"a\u0041"`, `7`, `null`}).Draw(t, "val"))
			}
			data = "{" + strings.Join(kv, ",") + "}"
		} else {
			data = strings.Join(rapid.SliceOfN(rapid.SampledFrom(pieces), 0, 12).Draw(t, "pieces"), "")
		}
		var want resultLike
		wantErr := json.Unmarshal([]byte(data), &want)
		got, err := reg.decode([]byte(data))
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("decode(%s): error %v, encoding/json: %v", data, err, wantErr)
		}
		if err == nil && got.(resultLike) != want {
			t.Fatalf("decode(%s) = %+v, encoding/json: %+v", data, got, want)
		}
	})
}

// targetedLike and dispatchedLike have the shapes of the catalog's
// JobDevicesTargeted and JobDevicesDispatched.
type (
	deviceLike struct {
		DeviceID string `json:"deviceId"`
		Name     string `json:"name"`
	}
	targetedLike struct {
		JobID   string       `json:"jobId"`
		Devices []deviceLike `json:"devices"`
	}
	dispatchedLike struct {
		JobID     string   `json:"jobId"`
		DeviceIDs []string `json:"deviceIds"`
	}
)

// TestListFieldsDecodeAsEncodingJSON: for data shaped like what
// encoding/json writes for types with lists (and for broken variants of
// it), the codec's decode returns what encoding/json does, error or not,
// nil and empty lists told apart.
func TestListFieldsDecodeAsEncodingJSON(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[targetedLike](), reflect.TypeFor[dispatchedLike]()} {
		if _, ok := fastFieldsOf(typ, true); !ok {
			t.Fatalf("%s has no fast decoder", typ)
		}
	}
	if _, ok := fastFieldsOf(reflect.TypeFor[struct {
		L [][]string `json:"l"`
	}](), true); ok {
		t.Error("a list of lists has a fast decoder")
	}
	// What encoding/json writes takes the fast path.
	fast, _ := fastFieldsOf(reflect.TypeFor[targetedLike](), true)
	for _, v := range []targetedLike{{JobID: "j"}, {JobID: "j", Devices: []deviceLike{}}, {JobID: "j", Devices: []deviceLike{{"d-1", "Fridge 1"}, {"d-2", ""}}}} {
		data, _ := json.Marshal(v)
		var got targetedLike
		if !fast.decode(data, reflect.ValueOf(&got).Elem()) || !reflect.DeepEqual(got, v) {
			t.Errorf("fast decode of %s: %#v, want %#v by the fast path", data, got, v)
		}
	}
	targeted, dispatched := Register[targetedLike]("T"), Register[dispatchedLike]("D")
	str := rapid.SampledFrom([]string{`"v1"`, `"dev-0001"`, `"a\u0041"`, `"é"`, `""`, `7`, `null`})
	rapid.Check(t, func(t *rapid.T) {
		list := func(elem func() string) string {
			switch rapid.IntRange(0, 5).Draw(t, "listForm") {
			case 0:
				return "null"
			case 1:
				return "[]"
			case 2:
				return "[" + elem() // unterminated
			}
			var es []string
			for range rapid.IntRange(1, 4).Draw(t, "len") {
				es = append(es, elem())
			}
			return "[" + strings.Join(es, rapid.SampledFrom([]string{",", ",", ", ", ""}).Draw(t, "sep")) + "]"
		}
		object := func(keys map[string]func() string) string {
			names := rapid.SliceOfN(rapid.SampledFrom([]string{"jobId", "devices", "deviceIds", "deviceId", "name", "JobID", "other"}), 0, 4).Draw(t, "keys")
			var kv []string
			for _, k := range names {
				v := str.Draw(t, "value")
				if f, ok := keys[k]; ok && rapid.IntRange(0, 4).Draw(t, "kind") > 0 {
					v = f()
				}
				kv = append(kv, `"`+k+`":`+v)
			}
			return "{" + strings.Join(kv, ",") + "}"
		}
		device := func() string {
			return object(map[string]func() string{"deviceId": func() string { return str.Draw(t, "id") }, "name": func() string { return str.Draw(t, "n") }})
		}
		data := object(map[string]func() string{
			"jobId":     func() string { return str.Draw(t, "job") },
			"devices":   func() string { return list(device) },
			"deviceIds": func() string { return list(func() string { return str.Draw(t, "id") }) },
		})
		if rapid.Bool().Draw(t, "padded") {
			data = " " + data + "\n"
		}
		check := func(reg Registration, want any, wantErr error) {
			got, err := reg.decode([]byte(data))
			if (err == nil) != (wantErr == nil) {
				t.Fatalf("decode(%s): error %v, encoding/json: %v", data, err, wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("decode(%s) = %#v, encoding/json: %#v", data, got, want)
			}
		}
		var wantT targetedLike
		errT := json.Unmarshal([]byte(data), &wantT)
		check(targeted, wantT, errT)
		var wantD dispatchedLike
		errD := json.Unmarshal([]byte(data), &wantD)
		check(dispatched, wantD, errD)
	})
}

// BenchmarkDecodeHotPath decodes what each delivered DeviceOperationSucceeded
// costs the client: its data ("codec": Codec.Decode's fast path,
// "encoding-json": json.Unmarshal, the baseline) and its metadata
// ("metadata": the delivery parser, "metadata-encoding-json":
// parseMetadata, the baseline).
//
//	go test -run '^$' -bench DecodeHotPath ./eventstore/
func BenchmarkDecodeHotPath(b *testing.B) {
	data := []byte(`{"jobId":"bench-0001","deviceId":"dev-0001234"}`)
	md := []byte(`{"commandId":"cmd-job-bench-0001","correlationId":"corr-job-bench-0001","causationId":"cmd-job-bench-0001","actor":"dispatcher","occurredAt":"2026-11-01T00:12:34.567Z"}`)
	codec := NewCatalogCodec()
	b.Run("codec", func(b *testing.B) {
		for range b.N {
			if _, err := codec.Decode(DeviceOperationSucceeded, data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for range b.N {
			var v resultLike
			if err := json.Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("metadata", func(b *testing.B) {
		var p metadataParser
		for range b.N {
			if _, err := p.parse(md); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("metadata-encoding-json", func(b *testing.B) {
		for range b.N {
			if _, err := parseMetadata(md); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodeTargeting decodes a targeting event of 1,000 devices (the
// size the job commands write): "codec" through the fast decoder,
// "encoding-json" with json.Unmarshal, the baseline.
//
//	go test -run '^$' -bench DecodeTargeting ./eventstore/
func BenchmarkDecodeTargeting(b *testing.B) {
	v := targetedLike{JobID: "bench-0001"}
	for i := range 1000 {
		id := fmt.Sprintf("fr-%07d", i)
		v.Devices = append(v.Devices, deviceLike{DeviceID: id, Name: "Fridge " + id})
	}
	data, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	reg := Register[targetedLike]("T")
	b.Run("codec", func(b *testing.B) {
		for b.Loop() {
			if _, err := reg.decode(data); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(v.Devices)), "ns/device")
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var got targetedLike
			if err := json.Unmarshal(data, &got); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(v.Devices)), "ns/device")
	})
}

// TestFastEncodeIsEncodingJSONs: what Encode writes for the types of the
// fast path is byte for byte what encoding/json writes, whatever the
// strings hold; a type that encodes itself gets no fast path.
func TestFastEncodeIsEncodingJSONs(t *testing.T) {
	c := MustNewCodec(Register[targetedLike]("T"), Register[dispatchedLike]("D"), Register[resultLike]("R"))
	str := rapid.OneOf(rapid.SampledFrom([]string{"", "dev-0001", "Fridge 7", `a"b`, `c\d`, "<&>", "a<b", "x>y", "p&q", "é", "\x01", "\u2028", "\xff"}), rapid.String())
	rapid.Check(t, func(t *rapid.T) {
		var values []any
		devices := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) deviceLike {
			return deviceLike{DeviceID: str.Draw(t, "id"), Name: str.Draw(t, "name")}
		}), -1, 5).Draw(t, "devices")
		ids := rapid.SliceOfN(str, -1, 5).Draw(t, "ids")
		if rapid.Bool().Draw(t, "nilLists") {
			devices, ids = nil, nil
		}
		values = append(values, targetedLike{JobID: str.Draw(t, "job"), Devices: devices},
			dispatchedLike{JobID: str.Draw(t, "job"), DeviceIDs: ids},
			resultLike{JobID: str.Draw(t, "job"), DeviceID: str.Draw(t, "dev"), Error: str.Draw(t, "err")})
		for _, v := range values {
			_, got, err := c.Encode(v)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(v)
			if string(got) != string(want) {
				t.Fatalf("Encode(%#v) = %s, encoding/json: %s", v, got, want)
			}
		}
	})
	if _, ok := fastFieldsOf(reflect.TypeFor[selfEncoding](), true); ok {
		t.Error("a type with its own MarshalJSON has a fast path")
	}
	if _, ok := fastFieldsOf(reflect.TypeFor[struct {
		S textual `json:"s"`
	}](), true); ok {
		t.Error("a field with its own MarshalText has a fast path")
	}
}

type selfEncoding struct {
	A string `json:"a"`
}

func (selfEncoding) MarshalJSON() ([]byte, error) { return []byte(`"self"`), nil }

type textual string

func (t textual) MarshalText() ([]byte, error) { return []byte("T" + string(t)), nil }
