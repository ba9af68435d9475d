package domaintest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/domain"
)

// Refusal pins a refusal in a decider table: its code, the fields it names
// (in order), and a phrase of its message an operator relies on.
type Refusal struct {
	Code   domain.Code
	Fields []string
	Says   string
}

// CheckRefusal fails tb unless got matches want; a nil want means the
// decision must have succeeded.
func CheckRefusal(tb testing.TB, got error, want *Refusal) {
	tb.Helper()
	if want == nil {
		if got != nil {
			tb.Fatalf("unexpected error: %v", got)
		}
		return
	}
	if got == nil {
		tb.Fatalf("no error, want %s naming %v", want.Code, want.Fields)
	}
	e, ok := domain.AsError(got)
	if !ok {
		tb.Fatalf("error %v is not a *domain.Error", got)
	}
	var fields []string
	for _, f := range e.Fields {
		fields = append(fields, f.Field)
	}
	if diff := cmp.Diff(Refusal{Code: want.Code, Fields: want.Fields}, Refusal{Code: e.Code, Fields: fields}); diff != "" {
		tb.Errorf("error %q (-want +got):\n%s", e.Error(), diff)
	}
	if !strings.Contains(e.Error(), want.Says) {
		tb.Errorf("error %q does not say %q", e.Error(), want.Says)
	}
}
