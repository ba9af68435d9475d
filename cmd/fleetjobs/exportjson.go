package main

import "encoding/json"

// validJSON is json.Valid, with a fast path for what the log holds by the
// million: a flat object of plain strings (no escapes, ASCII) and simple
// numbers, without spaces (event data and metadata as fleetjobs writes
// them). Anything else gets json.Valid's full check.
func validJSON(b []byte) bool {
	if flatObject(b) {
		return true
	}
	return json.Valid(b)
}

// flatObject reports whether b is {} or {"k":v,...} with plain string keys
// and values that are plain strings, integers, true, false or null.
func flatObject(b []byte) bool {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return false
	}
	b = b[1 : len(b)-1]
	if len(b) == 0 {
		return true
	}
	for {
		n := plainStringLen(b)
		if n < 0 || n == len(b) || b[n] != ':' {
			return false
		}
		b = b[n+1:]
		switch {
		case len(b) > 0 && b[0] == '"':
			n = plainStringLen(b)
		default:
			n = literalLen(b)
		}
		if n <= 0 {
			return false
		}
		b = b[n:]
		if len(b) == 0 {
			return true
		}
		if b[0] != ',' {
			return false
		}
		b = b[1:]
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
	for _, lit := range []string{"true", "false", "null"} {
		if len(b) >= len(lit) && string(b[:len(lit)]) == lit {
			return len(lit)
		}
	}
	i := 0
	if i < len(b) && b[i] == '-' {
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
