package store

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// Metadata keys that govern stream reads.
const (
	metaKeyTruncateBefore = "$tb"
	metaKeyMaxCount       = "$maxCount"
	metaKeyMaxAge         = "$maxAge"
)

// metaLimits are the parsed read-governing keys of a stream's effective
// metadata. Zero values mean "no limit".
type metaLimits struct {
	tb       uint64        // revisions < tb are hidden
	maxCount uint64        // only the last maxCount revisions are visible
	maxAge   time.Duration // events older than now-maxAge are hidden
}

// parseLimits extracts $tb, $maxCount and $maxAge from metadata JSON. The
// bytes are the caller's and may be anything: what does not parse as a JSON
// object with non-negative integers is ignored, as KurrentDB ignores
// metadata it cannot interpret rather than failing reads.
func parseLimits(meta []byte) metaLimits {
	var l metaLimits
	if len(meta) == 0 || !bytes.Contains(meta, []byte(`"$`)) {
		return l // fast path: no system keys at all
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(meta, &m); err != nil {
		return l
	}
	if v, ok := parseUint(m[metaKeyTruncateBefore]); ok {
		l.tb = v
	}
	if v, ok := parseUint(m[metaKeyMaxCount]); ok && v > 0 {
		l.maxCount = v
	}
	if v, ok := parseUint(m[metaKeyMaxAge]); ok && v > 0 {
		const maxSeconds = uint64(math.MaxInt64 / int64(time.Second))
		l.maxAge = time.Duration(min(v, maxSeconds)) * time.Second
	}
	return l
}

func parseUint(raw json.RawMessage) (uint64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(bytes.TrimSpace(raw)), 10, 64)
	return v, err == nil
}

// softDeleted reports whether the effective metadata marks the stream as
// soft-deleted ("$tb" == TombstoneRevision).
func (st *streamState) softDeleted() bool {
	return st.hasMeta && st.limits.tb == TombstoneRevision
}

// withTruncateBefore returns meta with "$tb" set to tb, keeping every other
// key and the order of keys as they were (the client compares round-tripped
// metadata, so it should change no more than needed). Metadata that is not
// a JSON object is replaced by {"$tb": tb}.
func withTruncateBefore(meta []byte, tb uint64) []byte {
	tbValue := strconv.AppendUint(nil, tb, 10)
	type member struct {
		key   string
		value json.RawMessage
	}
	var members []member
	dec := json.NewDecoder(bytes.NewReader(meta))
	dec.UseNumber()
	ok := func() bool {
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			return false
		}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return false
			}
			key, isString := tok.(string)
			if !isString {
				return false
			}
			var value json.RawMessage
			if err := dec.Decode(&value); err != nil {
				return false
			}
			members = append(members, member{key, value})
		}
		tok, err := dec.Token()
		return err == nil && tok == json.Delim('}')
	}()
	if !ok {
		members = nil
	}
	replaced := false
	for i := range members {
		if members[i].key == metaKeyTruncateBefore {
			members[i].value = tbValue
			replaced = true
		}
	}
	if !replaced {
		members = append(members, member{metaKeyTruncateBefore, tbValue})
	}
	var out, key bytes.Buffer
	enc := json.NewEncoder(&key)
	enc.SetEscapeHTML(false) // keep keys as the caller wrote them
	out.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			out.WriteByte(',')
		}
		key.Reset()
		_ = enc.Encode(m.key) // a string always encodes
		out.Write(bytes.TrimSuffix(key.Bytes(), []byte{'\n'}))
		out.WriteByte(':')
		out.Write(m.value)
	}
	out.WriteByte('}')
	return out.Bytes()
}
