package domain

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Code classifies a domain Error. The HTTP edge maps each code to one status
// in one table; the codes are stable words clients may rely on.
type Code string

// The codes of Error.
const (
	// CodeInvalid: the command is malformed or breaks a rule about its own
	// content (a missing name, a property of the wrong schema, an unknown
	// op, an unknown template). HTTP 400.
	CodeInvalid Code = "invalid"
	// CodeNotFound: the command targets something that does not exist
	// (deleting a template never published). HTTP 404.
	CodeNotFound Code = "not-found"
	// CodeConflict: the command is well-formed but the target's current
	// state refuses it (changing a deleted device, another body under an
	// existing job ID, a concurrent writer that kept winning). HTTP 409.
	CodeConflict Code = "conflict"
)

// FieldError names one invalid input field and says what was expected.
// Field is the input's JSON path as the caller wrote it, e.g. "name",
// "properties.fanSpeed", "conditions[1].op".
type FieldError struct {
	Field   string
	Message string
}

// Error is the one error type of the domain: a code for the edge's status
// table, a sentence for the operator, and for CodeInvalid the fields at fault.
// Decide functions return *Error; callers wrap it with context and the edge
// finds it with errors.As (or AsError).
type Error struct {
	Code    Code
	Message string
	Fields  []FieldError
}

// Error returns the message, with every field error after it.
func (e *Error) Error() string {
	if len(e.Fields) == 0 || (len(e.Fields) == 1 && e.Message == fieldSentence(e.Fields[0])) {
		return e.Message
	}
	var b strings.Builder
	b.WriteString(e.Message)
	for i, f := range e.Fields {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(fieldSentence(f))
	}
	return b.String()
}

func fieldSentence(f FieldError) string { return f.Field + ": " + f.Message }

// Invalid returns a CodeInvalid error about one field; the message is a
// sentence completed by args as in fmt.Sprintf.
func Invalid(field, format string, args ...any) *Error {
	f := FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
	return &Error{Code: CodeInvalid, Message: fieldSentence(f), Fields: []FieldError{f}}
}

// InvalidFields returns a CodeInvalid error listing every field at fault
// (nil when fields is empty), so that a caller fixes them all in one go.
func InvalidFields(fields []FieldError) *Error {
	switch len(fields) {
	case 0:
		return nil
	case 1:
		return &Error{Code: CodeInvalid, Message: fieldSentence(fields[0]), Fields: fields}
	}
	return &Error{Code: CodeInvalid, Message: fmt.Sprintf("%d fields are invalid", len(fields)), Fields: fields}
}

// NotFound returns a CodeNotFound error with a formatted message.
func NotFound(format string, args ...any) *Error {
	return &Error{Code: CodeNotFound, Message: fmt.Sprintf(format, args...)}
}

// Conflict returns a CodeConflict error with a formatted message.
func Conflict(format string, args ...any) *Error {
	return &Error{Code: CodeConflict, Message: fmt.Sprintf(format, args...)}
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// ErrorCode returns the Code of the *Error in err's chain, or "" if there is
// none (the error is not the domain's: an I/O failure, a bug).
func ErrorCode(err error) Code {
	if e, ok := AsError(err); ok {
		return e.Code
	}
	return ""
}

// maxIDLen bounds identifiers: they become stream names and URL segments.
const maxIDLen = 128

// CheckID returns a CodeInvalid error naming field unless id is a valid
// identifier: 1 to 128 characters among ASCII letters, digits and "-_.:@".
// Identifiers become stream names ("device-{id}") and URL path segments, so
// anything else (spaces, slashes, unicode look-alikes) is refused up front.
func CheckID(field, id string) error {
	if e := checkID(field, id); e != nil {
		return e
	}
	return nil
}

func checkID(field, id string) *Error {
	switch {
	case id == "":
		return Invalid(field, "is required")
	case len(id) > maxIDLen:
		return Invalid(field, "is %d characters long; at most %d are allowed", len(id), maxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || strings.IndexByte("-_.:@", c) >= 0 {
			continue
		}
		r, _ := utf8.DecodeRuneInString(id[i:])
		return Invalid(field, "%q contains %q; use only letters, digits and - _ . : @", id, r)
	}
	return nil
}

// NameProblem says what is wrong with a name besides being blank or too
// long, "" if nothing: names are shown in lists, job histories and
// one-line-per-event replays, so a name is one line of text, without
// control characters (newline, tab, NUL...), in valid UTF-8.
func NameProblem(name string) string {
	if !utf8.ValidString(name) {
		return "is not valid UTF-8"
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Sprintf("contains the control character %U; a name is one line of text", r)
		}
	}
	return ""
}
