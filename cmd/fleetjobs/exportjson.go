package main

import (
	"encoding/json"
	"strconv"

	"github.com/google/uuid"
)

// appendPosition appends the position as eventstore.Position.String
// writes it, C:<commit>/P:<prepare>, without allocating.
func appendPosition(b []byte, commit, prepare uint64) []byte {
	b = append(b, "C:"...)
	b = strconv.AppendUint(b, commit, 10)
	b = append(b, "/P:"...)
	return strconv.AppendUint(b, prepare, 10)
}

const hexDigits = "0123456789abcdef"

// appendUUID appends id as uuid.UUID.String writes it (8-4-4-4-12 lower
// case hex digits), without allocating.
func appendUUID(b []byte, id *uuid.UUID) []byte {
	for i, x := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[x>>4], hexDigits[x&0xf])
	}
	return b
}

// validJSON is json.Valid, with a fast path for what the log holds by the
// million: JSON as encoding/json writes it for ASCII text, without spaces,
// escapes or fractions (event data and metadata as fleetjobs writes them).
// Anything else gets json.Valid's full check.
func validJSON(b []byte) bool {
	if plainValueLen(b, 0) == len(b) {
		return true
	}
	return json.Valid(b)
}

// maxPlainDepth bounds the nesting plainValueLen follows (it recurses);
// deeper values get json.Valid, which does not.
const maxPlainDepth = 32

// plainValueLen is the length of the JSON value at the start of b, or -1
// unless it is "plain": objects, arrays, strings of printable ASCII without
// escapes, integers, true, false and null, without whitespace, nested at
// most maxPlainDepth deep. A plain value holds no line break.
func plainValueLen(b []byte, depth int) int {
	if len(b) == 0 || depth > maxPlainDepth {
		return -1
	}
	switch b[0] {
	case '"':
		return plainStringLen(b)
	case '{', '[':
		end := byte('}')
		if b[0] == '[' {
			end = ']'
		}
		i := 1
		if i < len(b) && b[i] == end {
			return 2
		}
		for {
			if end == '}' {
				n := plainStringLen(b[i:])
				if n < 0 || i+n >= len(b) || b[i+n] != ':' {
					return -1
				}
				i += n + 1
			}
			n := plainValueLen(b[i:], depth+1)
			if n < 0 || i+n >= len(b) {
				return -1
			}
			i += n
			switch b[i] {
			case ',':
				i++
			case end:
				return i + 1
			default:
				return -1
			}
		}
	default:
		return literalLen(b)
	}
}

// plainStringLen is the length of the JSON string at the start of b,
// quotes included, or -1 unless it is there and holds only printable
// ASCII without escapes.
func plainStringLen(b []byte) int {
	if len(b) == 0 || b[0] != '"' {
		return -1
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return -1
		}
	}
	return -1
}

// literalLen is the length of the integer, true, false or null at the
// start of b, or -1.
func literalLen(b []byte) int {
	switch b[0] {
	case 't':
		return keywordLen(b, "true")
	case 'f':
		return keywordLen(b, "false")
	case 'n':
		return keywordLen(b, "null")
	}
	i := 0
	if b[i] == '-' {
		i++
	}
	digits := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == digits || (b[digits] == '0' && i > digits+1) {
		return -1 // no digits, or a leading zero
	}
	return i
}

// keywordLen is len(kw) if b starts with kw, else -1.
func keywordLen(b []byte, kw string) int {
	if len(b) >= len(kw) && string(b[:len(kw)]) == kw {
		return len(kw)
	}
	return -1
}

// plainJSONString reports whether s needs no escaping in JSON as
// encoding/json writes it (which also escapes <, > and &).
func plainJSONString(s string) bool {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
