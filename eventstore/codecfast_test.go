package eventstore

import (
	"encoding/json"
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
	if _, ok := stringFieldsOf(reflect.TypeFor[resultLike]()); !ok {
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
