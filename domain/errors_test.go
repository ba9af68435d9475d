package domain_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/domain"
)

func TestErrorIsFoundThroughWrapping(t *testing.T) {
	err := fmt.Errorf("device device-d1: %w", domain.Invalid("properties.fanSpeed", "must be a number, got %s", "a string"))
	e, ok := domain.AsError(err)
	if !ok {
		t.Fatalf("AsError(%v) found nothing", err)
	}
	want := &domain.Error{Code: domain.CodeInvalid, Message: "properties.fanSpeed: must be a number, got a string",
		Fields: []domain.FieldError{{Field: "properties.fanSpeed", Message: "must be a number, got a string"}}}
	if diff := cmp.Diff(want, e); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
	if got := domain.ErrorCode(fmt.Errorf("x: %w", domain.Conflict("stopped"))); got != domain.CodeConflict {
		t.Errorf("ErrorCode = %q, want conflict", got)
	}
	if got := domain.ErrorCode(fmt.Errorf("disk on fire")); got != "" {
		t.Errorf("ErrorCode of a plain error = %q, want none", got)
	}
}

func TestInvalidFieldsListsEveryField(t *testing.T) {
	if domain.InvalidFields(nil) != nil {
		t.Error("InvalidFields(nil) is not nil")
	}
	e := domain.InvalidFields([]domain.FieldError{{Field: "name", Message: "is required"}, {Field: "templateId", Message: "is required"}})
	if got, want := e.Error(), "2 fields are invalid: name: is required; templateId: is required"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestCheckID(t *testing.T) {
	cases := []struct {
		id   string
		want string // "" when valid
	}{
		{"vending-v2", ""},
		{"a.b_c:d@e-1", ""},
		{"", "deviceId: is required"},
		{"a/b", `deviceId: "a/b" contains '/'; use only letters, digits and - _ . : @`},
		{"é", `deviceId: "é" contains 'é'; use only letters, digits and - _ . : @`},
		{string(make([]byte, 129)), "deviceId: is 129 characters long; at most 128 are allowed"},
	}
	for _, c := range cases {
		got := ""
		if err := domain.CheckID("deviceId", c.id); err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("CheckID(%q) = %q, want %q", c.id, got, c.want)
		}
	}
}
