package projections

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// deviceJSON encodes a Device document as json.Marshal would read it back:
// written by hand because it is the one document written per device event,
// where reflection costs a third of the projector's time. Keys and property
// names are in a fixed (sorted) order, so a rebuild writes the same bytes.
func deviceJSON(d Device) string {
	b := make([]byte, 0, 160+32*len(d.Properties))
	b = append(b, `{"id":`...)
	b = appendJSONString(b, d.ID)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, d.Name)
	b = append(b, `,"templateId":`...)
	b = appendJSONString(b, d.TemplateID)
	b = append(b, `,"properties":{`...)
	var buf [16]string // property names, sorted: on the stack for most devices
	names := buf[:0]
	for k := range d.Properties {
		names = append(names, k)
	}
	slices.Sort(names)
	for i, k := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONValue(b, d.Properties[k])
	}
	b = append(b, `},"updatedAt":"`...)
	b = d.UpdatedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `"}`...)
	return string(b)
}

// appendJSONString appends s as a JSON string, quickly when it needs no
// escaping (the usual IDs and names), else as encoding/json escapes it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return appendMarshal(b, s)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendJSONValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendJSONString(b, x)
	case bool:
		return strconv.AppendBool(b, x)
	case float64:
		if x == float64(int64(x)) && x < 1e15 && x > -1e15 {
			return strconv.AppendInt(b, int64(x), 10)
		}
		return appendMarshal(b, x)
	}
	return appendMarshal(b, v)
}

func appendMarshal(b []byte, v any) []byte {
	j, err := json.Marshal(v)
	if err != nil {
		// Property values come from decoded JSON events: they encode.
		panic("projections: encode a device property: " + err.Error())
	}
	return append(b, j...)
}
