package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

func TestValidationRefusesBadInputAndWritesNothing(t *testing.T) {
	ctx := context.Background()
	good := ev("E", "{}")
	cases := []struct {
		name string
		do   func(s *store.Store) error
	}{
		{"empty stream name", func(s *store.Store) error {
			_, err := s.Append(ctx, "", any_, []store.Proposed{good})
			return err
		}},
		{"$all as stream name", func(s *store.Store) error {
			_, err := s.Append(ctx, "$all", any_, []store.Proposed{good})
			return err
		}},
		{"invalid UTF-8 stream name", func(s *store.Store) error {
			_, err := s.Append(ctx, "bad\xff", any_, []store.Proposed{good})
			return err
		}},
		{"empty event type", func(s *store.Store) error {
			e := good
			e.Type = ""
			_, err := s.Append(ctx, "s", any_, []store.Proposed{good, e})
			return err
		}},
		{"nil event id", func(s *store.Store) error {
			e := good
			e.ID = [16]byte{}
			_, err := s.Append(ctx, "s", any_, []store.Proposed{e})
			return err
		}},
		{"unknown expected kind", func(s *store.Store) error {
			_, err := s.Append(ctx, "s", store.Expected{Kind: 42}, []store.Proposed{good})
			return err
		}},
		{"delete of empty name", func(s *store.Store) error {
			_, err := s.Delete(ctx, "", any_)
			return err
		}},
		{"delete of $all", func(s *store.Store) error {
			_, err := s.Delete(ctx, "$all", any_)
			return err
		}},
		{"delete of a metastream", func(s *store.Store) error {
			_, err := s.Delete(ctx, "$$s", any_)
			return err
		}},
		{"tombstone of a metastream", func(s *store.Store) error {
			_, err := s.Tombstone(ctx, "$$s", any_)
			return err
		}},
		{"read of $all as a stream", func(s *store.Store) error {
			return s.ReadStream(ctx, "$all", 0, false, func(store.Record) bool { return true })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := MustOpen(t, store.Options{InMemory: true})
			if d := checkErr(tc.do(s), store.ErrInvalidArgument); d != "" {
				t.Fatal(d)
			}
			if h := s.Head(); h != 0 {
				t.Fatalf("Head() = %d after a refused write, want 0", h)
			}
		})
	}
}

func TestExpectedRevision(t *testing.T) {
	cases := []struct {
		name    string
		given   func(t *testing.T, s *store.Store)
		exp     store.Expected
		events  int
		want    store.AppendResult
		wantErr error
	}{
		{name: "any on a missing stream creates it at revision 0", exp: any_, events: 1,
			want: store.AppendResult{LastRevision: 0, Position: 1}},
		{name: "no stream on a missing stream creates it", exp: noStream, events: 2,
			want: store.AppendResult{LastRevision: 1, Position: 2}},
		{name: "no stream on an existing stream is a wrong expected version", exp: noStream, events: 1,
			given:   func(t *testing.T, s *store.Store) { MustAppend(t, s, "s", any_, ev("A", "{}"), ev("B", "{}")) },
			wantErr: &store.WrongExpectedVersionError{Stream: "s", Expected: noStream, CurrentRevision: 1}},
		{name: "stream exists on a missing stream is a wrong expected version with no stream", exp: exists, events: 1,
			wantErr: &store.WrongExpectedVersionError{Stream: "s", Expected: exists, CurrentNoStream: true}},
		{name: "stream exists succeeds when only the metastream exists", exp: exists, events: 1,
			given: func(t *testing.T, s *store.Store) { MustAppend(t, s, "$$s", any_, ev(store.TypeMetadata, `{"x":1}`)) },
			want:  store.AppendResult{LastRevision: 0, Position: 2}},
		{name: "stream exists on an existing stream succeeds", exp: exists, events: 1,
			given: func(t *testing.T, s *store.Store) { MustAppend(t, s, "s", any_, ev("A", "{}")) },
			want:  store.AppendResult{LastRevision: 1, Position: 2}},
		{name: "stream exists on a soft-deleted stream is stream deleted", exp: exists, events: 1,
			given: func(t *testing.T, s *store.Store) {
				MustAppend(t, s, "s", any_, ev("A", "{}"))
				MustDelete(t, s, "s", any_)
			},
			wantErr: &store.StreamDeletedError{Stream: "s"}},
		{name: "revision equal to the last revision succeeds", exp: rev(1), events: 2,
			given: func(t *testing.T, s *store.Store) { MustAppend(t, s, "s", any_, ev("A", "{}"), ev("B", "{}")) },
			want:  store.AppendResult{LastRevision: 3, Position: 4}},
		{name: "revision behind the last revision is a wrong expected version", exp: rev(0), events: 1,
			given: func(t *testing.T, s *store.Store) {
				MustAppend(t, s, "s", any_, ev("A", "{}"), ev("B", "{}"), ev("C", "{}"))
			},
			wantErr: &store.WrongExpectedVersionError{Stream: "s", Expected: rev(0), CurrentRevision: 2}},
		{name: "revision ahead of the last revision is a wrong expected version", exp: rev(5), events: 1,
			given:   func(t *testing.T, s *store.Store) { MustAppend(t, s, "s", any_, ev("A", "{}")) },
			wantErr: &store.WrongExpectedVersionError{Stream: "s", Expected: rev(5), CurrentRevision: 0}},
		{name: "revision on a missing stream is a wrong expected version with no stream", exp: rev(0), events: 1,
			wantErr: &store.WrongExpectedVersionError{Stream: "s", Expected: rev(0), CurrentNoStream: true}},
		{name: "zero events with any to a missing stream succeeds without creating it", exp: any_,
			want: store.AppendResult{NoStream: true}},
		{name: "zero events with no stream to a missing stream succeeds without creating it", exp: noStream,
			want: store.AppendResult{NoStream: true}},
		{name: "zero events to an existing stream returns its last revision and position", exp: any_,
			given: func(t *testing.T, s *store.Store) {
				MustAppend(t, s, "s", any_, ev("A", "{}"), ev("B", "{}"))
				MustAppend(t, s, "other", any_, ev("A", "{}"))
			},
			want: store.AppendResult{LastRevision: 1, Position: 2}},
		{name: "zero events with stream exists to a missing stream is a wrong expected version", exp: exists,
			wantErr: &store.WrongExpectedVersionError{Stream: "s", Expected: exists, CurrentNoStream: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := MustOpen(t, store.Options{InMemory: true})
			if tc.given != nil {
				tc.given(t, s)
			}
			head := s.Head()
			events := make([]store.Proposed, tc.events)
			for i := range events {
				events[i] = ev("New", "{}")
			}
			got, err := s.Append(context.Background(), "s", tc.exp, events)
			if d := checkErr(err, tc.wantErr); d != "" {
				t.Fatal(d)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("result (-want +got):\n%s", d)
			}
			if tc.wantErr != nil || tc.events == 0 {
				if s.Head() != head {
					t.Errorf("Head() = %d, want %d: nothing should be written", s.Head(), head)
				}
			}
			if tc.events == 0 && tc.want.NoStream {
				if _, err := readStream(t, s, "s", 0, false); checkErr(err, store.ErrStreamNotFound) != "" {
					t.Errorf("read after a zero-event append: %v, want not found", err)
				}
			}
		})
	}
}

func TestTombstonedStreamRefusesEveryExpectation(t *testing.T) {
	for _, exp := range []store.Expected{any_, noStream, exists, rev(0), rev(store.TombstoneRevision)} {
		t.Run("expected "+exp.String(), func(t *testing.T) {
			s := MustOpen(t, store.Options{InMemory: true})
			MustAppend(t, s, "s", any_, ev("A", "{}"))
			MustTombstone(t, s, "s", any_)
			_, err := s.Append(context.Background(), "s", exp, []store.Proposed{ev("B", "{}")})
			if d := checkErr(err, &store.StreamDeletedError{Stream: "s"}); d != "" {
				t.Fatal(d)
			}
		})
	}
}

func TestIdempotentRetries(t *testing.T) {
	a, b, c, d := evID(1, "A"), evID(2, "B"), evID(3, "C"), evID(4, "D")
	cases := []struct {
		name    string
		given   []store.Proposed // appended with NoStream
		exp     store.Expected
		retry   []store.Proposed
		want    store.AppendResult
		wantErr error
		writes  uint64 // records the retry must write
	}{
		{name: "same ids at the same revision return the original result",
			given: []store.Proposed{a, b, c}, exp: rev(0), retry: []store.Proposed{b, c},
			want: store.AppendResult{LastRevision: 2, Position: 3}},
		{name: "same ids with no stream return the original result",
			given: []store.Proposed{a, b}, exp: noStream, retry: []store.Proposed{a, b},
			want: store.AppendResult{LastRevision: 1, Position: 2}},
		{name: "same ids with no stream matching a prefix return the prefix's result",
			given: []store.Proposed{a, b, c}, exp: noStream, retry: []store.Proposed{a},
			want: store.AppendResult{LastRevision: 0, Position: 1}},
		{name: "same ids as the last events with any return the original result",
			given: []store.Proposed{a, b, c}, exp: any_, retry: []store.Proposed{b, c},
			want: store.AppendResult{LastRevision: 2, Position: 3}},
		{name: "same ids as the last events with stream exists return the original result",
			given: []store.Proposed{a, b}, exp: exists, retry: []store.Proposed{b},
			want: store.AppendResult{LastRevision: 1, Position: 2}},
		{name: "a partial match under no stream is a wrong expected version",
			given: []store.Proposed{a, b}, exp: noStream, retry: []store.Proposed{a, c},
			wantErr: &store.WrongExpectedVersionError{Stream: "s", Expected: noStream, CurrentRevision: 1}},
		{name: "a retry longer than what was stored is a wrong expected version",
			given: []store.Proposed{a, b}, exp: rev(0), retry: []store.Proposed{b, c},
			wantErr: &store.WrongExpectedVersionError{Stream: "s", Expected: rev(0), CurrentRevision: 1}},
		{name: "any with the same last id but a different earlier id appends anew",
			given: []store.Proposed{a, b}, exp: any_, retry: []store.Proposed{d, b},
			want: store.AppendResult{LastRevision: 3, Position: 4}, writes: 2},
		{name: "any with ids matching earlier events but not the last ones appends anew",
			given: []store.Proposed{a, b, c}, exp: any_, retry: []store.Proposed{a},
			want: store.AppendResult{LastRevision: 3, Position: 4}, writes: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := MustOpen(t, store.Options{InMemory: true})
			MustAppend(t, s, "s", noStream, tc.given...)
			head := s.Head()
			got, err := s.Append(context.Background(), "s", tc.exp, tc.retry)
			if d := checkErr(err, tc.wantErr); d != "" {
				t.Fatal(d)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("result (-want +got):\n%s", d)
			}
			if s.Head() != head+tc.writes {
				t.Errorf("Head() = %d, want %d", s.Head(), head+tc.writes)
			}
		})
	}
}

func TestMetastreams(t *testing.T) {
	t.Run("reading a metastream returns only the latest metadata", func(t *testing.T) {
		s := MustOpen(t, store.Options{InMemory: true})
		MustAppend(t, s, "$$s", any_, ev(store.TypeMetadata, `{"v":1}`))
		MustAppend(t, s, "$$s", rev(0), ev(store.TypeMetadata, `{"v":2}`))
		want := []seen{{1, store.TypeMetadata, `{"v":2}`}}
		if d := cmp.Diff(want, MustReadStream(t, s, "$$s", 0, false)); d != "" {
			t.Errorf("forwards (-want +got):\n%s", d)
		}
		if d := cmp.Diff(want, MustReadStream(t, s, "$$s", store.End, true)); d != "" {
			t.Errorf("backwards (-want +got):\n%s", d)
		}
	})
	t.Run("metadata bytes are stored verbatim", func(t *testing.T) {
		s := MustOpen(t, store.Options{InMemory: true})
		const meta = ` { "$maxCount" : 3,  "custom":"x" } `
		MustAppend(t, s, "$$s", any_, ev(store.TypeMetadata, meta))
		want := []seen{{0, store.TypeMetadata, meta}}
		if d := cmp.Diff(want, MustReadStream(t, s, "$$s", 0, false)); d != "" {
			t.Errorf("(-want +got):\n%s", d)
		}
	})
	t.Run("a metastream without metadata is not found", func(t *testing.T) {
		s := MustOpen(t, store.Options{InMemory: true})
		MustAppend(t, s, "s", any_, ev("A", "{}"))
		_, err := readStream(t, s, "$$s", 0, false)
		if d := checkErr(err, store.ErrStreamNotFound); d != "" {
			t.Fatal(d)
		}
	})
	t.Run("the metastream of a tombstoned stream is deleted for reads and appends", func(t *testing.T) {
		s := MustOpen(t, store.Options{InMemory: true})
		MustAppend(t, s, "$$s", any_, ev(store.TypeMetadata, `{}`))
		MustTombstone(t, s, "s", any_)
		_, err := readStream(t, s, "$$s", 0, false)
		if d := checkErr(err, &store.StreamDeletedError{Stream: "$$s"}); d != "" {
			t.Errorf("read: %s", d)
		}
		_, err = s.Append(context.Background(), "$$s", any_, []store.Proposed{ev(store.TypeMetadata, `{}`)})
		if d := checkErr(err, &store.StreamDeletedError{Stream: "$$s"}); d != "" {
			t.Errorf("append: %s", d)
		}
	})
	t.Run("metastream expectations refer to the metastream's own revisions", func(t *testing.T) {
		s := MustOpen(t, store.Options{InMemory: true})
		MustAppend(t, s, "s", any_, ev("A", "{}"), ev("B", "{}"))
		got := MustAppend(t, s, "$$s", noStream, ev(store.TypeMetadata, `{}`))
		if d := cmp.Diff(store.AppendResult{LastRevision: 0, Position: 3}, got); d != "" {
			t.Errorf("(-want +got):\n%s", d)
		}
		_, err := s.Append(context.Background(), "$$s", noStream, []store.Proposed{ev(store.TypeMetadata, `{}`)})
		if d := checkErr(err, &store.WrongExpectedVersionError{Stream: "$$s", Expected: noStream}); d != "" {
			t.Errorf("second no stream: %s", d)
		}
	})
}

func TestTruncation(t *testing.T) {
	cases := []struct {
		name      string
		meta      string
		age       time.Duration // clock advance between the first 3 and the last 2 events
		after     time.Duration // clock advance before reading
		forwards  []uint64
		backwards []uint64
	}{
		{name: "no metadata shows everything", meta: `{"custom":1}`,
			forwards: []uint64{0, 1, 2, 3, 4}, backwards: []uint64{4, 3, 2, 1, 0}},
		{name: "$tb hides revisions before it", meta: `{"$tb":2}`,
			forwards: []uint64{2, 3, 4}, backwards: []uint64{4, 3, 2}},
		{name: "$maxCount shows only the last n", meta: `{"$maxCount":2}`,
			forwards: []uint64{3, 4}, backwards: []uint64{4, 3}},
		{name: "$tb and $maxCount combine", meta: `{"$maxCount":4,"$tb":3}`,
			forwards: []uint64{3, 4}, backwards: []uint64{4, 3}},
		{name: "$maxAge hides old events", meta: `{"$maxAge":60}`, age: 10 * time.Minute,
			forwards: []uint64{3, 4}, backwards: []uint64{4, 3}},
		{name: "$maxAge hiding everything leaves an existing empty stream", meta: `{"$maxAge":60}`,
			after: time.Hour},
		{name: "$tb past the end leaves an existing empty stream", meta: `{"$tb":10}`},
		{name: "metadata that is not JSON is ignored", meta: `not json`,
			forwards: []uint64{0, 1, 2, 3, 4}, backwards: []uint64{4, 3, 2, 1, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			s := MustOpen(t, store.Options{InMemory: true, Now: clock.Now})
			MustAppend(t, s, "s", any_, ev("E", "0"), ev("E", "1"), ev("E", "2"))
			clock.Advance(tc.age)
			MustAppend(t, s, "s", any_, ev("E", "3"), ev("E", "4"))
			MustAppend(t, s, "$$s", any_, ev(store.TypeMetadata, tc.meta))
			clock.Advance(tc.after)
			revs := func(in []seen) []uint64 {
				var out []uint64
				for _, r := range in {
					out = append(out, r.Rev)
				}
				return out
			}
			if d := cmp.Diff(tc.forwards, revs(MustReadStream(t, s, "s", 0, false))); d != "" {
				t.Errorf("forwards (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.backwards, revs(MustReadStream(t, s, "s", store.End, true))); d != "" {
				t.Errorf("backwards (-want +got):\n%s", d)
			}
			if n := len(MustReadAll(t, s, 0, false)); n != 6 {
				t.Errorf("$all has %d records, want 6: truncation must not apply to $all", n)
			}
		})
	}
}

func TestSoftDelete(t *testing.T) {
	ctx := context.Background()
	t.Run("a deleted stream reads as not found", func(t *testing.T) {
		s := MustOpen(t, store.Options{InMemory: true})
		MustAppend(t, s, "s", any_, ev("A", "{}"))
		res := MustDelete(t, s, "s", rev(0))
		if res.Position != 2 {
			t.Errorf("delete position = %d, want 2", res.Position)
		}
		for _, backwards := range []bool{false, true} {
			if _, err := readStream(t, s, "s", 0, backwards); checkErr(err, store.ErrStreamNotFound) != "" {
				t.Errorf("read (backwards=%v): %v, want not found", backwards, err)
			}
		}
	})
	t.Run("delete keeps other metadata keys and adds $tb", func(t *testing.T) {
		s := MustOpen(t, store.Options{InMemory: true})
		MustAppend(t, s, "s", any_, ev("A", "{}"))
		MustAppend(t, s, "$$s", any_, ev(store.TypeMetadata, `{"$maxCount":5,"custom":"x"}`))
		MustDelete(t, s, "s", any_)
		want := []seen{{1, store.TypeMetadata, `{"$maxCount":5,"custom":"x","$tb":9223372036854775807}`}}
		if d := cmp.Diff(want, MustReadStream(t, s, "$$s", 0, false)); d != "" {
			t.Errorf("(-want +got):\n%s", d)
		}
	})
	for _, exp := range []store.Expected{any_, noStream} {
		t.Run("deleting a missing stream with "+exp.String()+" succeeds and writes a record", func(t *testing.T) {
			s := MustOpen(t, store.Options{InMemory: true})
			res := MustDelete(t, s, "s", exp)
			if res.Position != 1 || s.Head() != 1 {
				t.Errorf("position %d, head %d, want 1 and 1", res.Position, s.Head())
			}
		})
	}
	t.Run("delete with a wrong expected revision fails", func(t *testing.T) {
		s := MustOpen(t, store.Options{InMemory: true})
		MustAppend(t, s, "s", any_, ev("A", "{}"), ev("B", "{}"))
		_, err := s.Delete(ctx, "s", rev(0))
		if d := checkErr(err, &store.WrongExpectedVersionError{Stream: "s", Expected: rev(0), CurrentRevision: 1}); d != "" {
			t.Fatal(d)
		}
	})
	t.Run("delete of a tombstoned stream is stream deleted", func(t *testing.T) {
		s := MustOpen(t, store.Options{InMemory: true})
		MustTombstone(t, s, "s", any_)
		_, err := s.Delete(ctx, "s", any_)
		if d := checkErr(err, &store.StreamDeletedError{Stream: "s"}); d != "" {
			t.Fatal(d)
		}
	})
	for _, exp := range []store.Expected{any_, noStream, rev(2)} {
		t.Run("recreating with "+exp.String()+" continues numbering and hides old events", func(t *testing.T) {
			s := MustOpen(t, store.Options{InMemory: true})
			MustAppend(t, s, "s", any_, ev("A", "0"), ev("A", "1"), ev("A", "2"))
			MustDelete(t, s, "s", any_)
			got := MustAppend(t, s, "s", exp, ev("B", "3"))
			if d := cmp.Diff(store.AppendResult{LastRevision: 3, Position: 5}, got); d != "" {
				t.Errorf("result (-want +got):\n%s", d)
			}
			if d := cmp.Diff([]seen{{3, "B", "3"}}, MustReadStream(t, s, "s", 0, false)); d != "" {
				t.Errorf("read (-want +got):\n%s", d)
			}
			meta := MustReadStream(t, s, "$$s", 0, false)
			if d := cmp.Diff([]seen{{1, store.TypeMetadata, `{"$tb":3}`}}, meta); d != "" {
				t.Errorf("metadata (-want +got):\n%s", d)
			}
			all := MustReadAll(t, s, 5, false)
			if len(all) != 2 || all[0].Stream != "s" || all[1].Stream != "$$s" {
				t.Errorf("the recreating event and its metadata should be adjacent in $all: %+v", all)
			}
			_, err := s.Append(ctx, "s", noStream, []store.Proposed{ev("C", "{}")})
			if d := checkErr(err, &store.WrongExpectedVersionError{Stream: "s", Expected: noStream, CurrentRevision: 3}); d != "" {
				t.Errorf("second no stream: %s", d)
			}
		})
	}
	t.Run("setting metadata on a deleted stream rewrites $tb so it reads empty", func(t *testing.T) {
		s := MustOpen(t, store.Options{InMemory: true})
		MustAppend(t, s, "s", any_, ev("A", "0"), ev("A", "1"))
		MustDelete(t, s, "s", any_)
		MustAppend(t, s, "$$s", any_, ev(store.TypeMetadata, `{"custom":1,"$tb":9223372036854775807}`))
		if got := MustReadStream(t, s, "s", 0, false); len(got) != 0 {
			t.Errorf("read = %v, want empty", got)
		}
		want := []seen{{1, store.TypeMetadata, `{"custom":1,"$tb":2}`}}
		if d := cmp.Diff(want, MustReadStream(t, s, "$$s", 0, false)); d != "" {
			t.Errorf("metadata (-want +got):\n%s", d)
		}
	})
}

func TestTombstone(t *testing.T) {
	ctx := context.Background()
	t.Run("every operation on a tombstoned stream and its metastream is stream deleted", func(t *testing.T) {
		s := MustOpen(t, store.Options{InMemory: true})
		MustAppend(t, s, "s", any_, ev("A", "{}"))
		MustTombstone(t, s, "s", rev(0))
		type check struct {
			name   string
			err    error
			stream string // the name the error must carry
		}
		var checks []check
		_, err := readStream(t, s, "s", 0, false)
		checks = append(checks, check{"read", err, "s"})
		_, err = readStream(t, s, "s", store.End, true)
		checks = append(checks, check{"read backwards", err, "s"})
		_, err = readStream(t, s, "$$s", 0, false)
		checks = append(checks, check{"read metastream", err, "$$s"})
		_, err = s.Append(ctx, "s", any_, []store.Proposed{ev("B", "{}")})
		checks = append(checks, check{"append", err, "s"})
		_, err = s.Append(ctx, "$$s", any_, []store.Proposed{ev(store.TypeMetadata, "{}")})
		checks = append(checks, check{"set metadata", err, "$$s"})
		_, err = s.Delete(ctx, "s", any_)
		checks = append(checks, check{"delete", err, "s"})
		_, err = s.Tombstone(ctx, "s", any_)
		checks = append(checks, check{"tombstone twice", err, "s"})
		for _, c := range checks {
			if d := checkErr(c.err, &store.StreamDeletedError{Stream: c.stream}); d != "" {
				t.Errorf("%s: %s", c.name, d)
			}
		}
	})
	t.Run("the tombstone is visible in $all", func(t *testing.T) {
		s := MustOpen(t, store.Options{InMemory: true})
		MustAppend(t, s, "s", any_, ev("A", "{}"))
		res := MustTombstone(t, s, "s", any_)
		all := MustReadAll(t, s, 0, false)
		last := all[len(all)-1]
		got := seen{last.Revision, last.Type, ""}
		if d := cmp.Diff(seen{store.TombstoneRevision, store.TypeStreamDeleted, ""}, got); d != "" || last.Position != res.Position || last.Stream != "s" {
			t.Errorf("tombstone record %+v at %d, want position %d (-want +got):\n%s", last, last.Position, res.Position, d)
		}
	})
	for _, exp := range []store.Expected{any_, noStream} {
		t.Run("tombstoning a missing stream with "+exp.String()+" succeeds", func(t *testing.T) {
			s := MustOpen(t, store.Options{InMemory: true})
			if res := MustTombstone(t, s, "s", exp); res.Position != 1 {
				t.Errorf("position = %d, want 1", res.Position)
			}
		})
	}
	t.Run("tombstone with a wrong expected revision fails", func(t *testing.T) {
		s := MustOpen(t, store.Options{InMemory: true})
		MustAppend(t, s, "s", any_, ev("A", "{}"))
		_, err := s.Tombstone(ctx, "s", noStream)
		if d := checkErr(err, &store.WrongExpectedVersionError{Stream: "s", Expected: noStream}); d != "" {
			t.Fatal(d)
		}
	})
}

func TestReadStreamRanges(t *testing.T) {
	s := MustOpen(t, store.Options{InMemory: true})
	for i := range 5 {
		MustAppend(t, s, "s", any_, ev("E", string(rune('0'+i))))
		MustAppend(t, s, "other", any_, ev("O", "{}"))
	}
	cases := []struct {
		name      string
		stream    string
		from      uint64
		backwards bool
		want      []uint64
		wantErr   error
	}{
		{name: "forwards from start", stream: "s", from: 0, want: []uint64{0, 1, 2, 3, 4}},
		{name: "forwards from a revision is inclusive", stream: "s", from: 2, want: []uint64{2, 3, 4}},
		{name: "forwards past the end is empty", stream: "s", from: 10},
		{name: "forwards from end is empty", stream: "s", from: store.End},
		{name: "backwards from end starts at the last", stream: "s", from: store.End, backwards: true, want: []uint64{4, 3, 2, 1, 0}},
		{name: "backwards from a revision is inclusive", stream: "s", from: 2, backwards: true, want: []uint64{2, 1, 0}},
		{name: "backwards from above the last starts at the last", stream: "s", from: 10, backwards: true, want: []uint64{4, 3, 2, 1, 0}},
		{name: "a missing stream is not found", stream: "missing", wantErr: store.ErrStreamNotFound},
		{name: "a missing stream from end is not found", stream: "missing", from: store.End, wantErr: store.ErrStreamNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readStream(t, s, tc.stream, tc.from, tc.backwards)
			if d := checkErr(err, tc.wantErr); d != "" {
				t.Fatal(d)
			}
			var revs []uint64
			for _, r := range got {
				revs = append(revs, r.Rev)
			}
			if d := cmp.Diff(tc.want, revs); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	t.Run("returning false stops the read", func(t *testing.T) {
		n := 0
		err := s.ReadStream(context.Background(), "s", 0, false, func(store.Record) bool { n++; return n < 2 })
		if err != nil || n != 2 {
			t.Errorf("read %d records with error %v, want 2 and nil", n, err)
		}
	})
	t.Run("a cancelled context stops the read", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		err := s.ReadStream(ctx, "s", 0, false, func(store.Record) bool { n++; cancel(); return true })
		if d := checkErr(err, context.Canceled); d != "" || n != 1 {
			t.Errorf("read %d records: %s", n, d)
		}
	})
}

func TestReadAllRanges(t *testing.T) {
	s := MustOpen(t, store.Options{InMemory: true})
	for range 5 {
		MustAppend(t, s, "s", any_, ev("E", "{}"))
	}
	cases := []struct {
		name      string
		from      uint64
		backwards bool
		want      []uint64
	}{
		{name: "forwards from start", from: 0, want: []uint64{1, 2, 3, 4, 5}},
		{name: "forwards from a position is inclusive", from: 3, want: []uint64{3, 4, 5}},
		{name: "forwards past the head is empty", from: 6},
		{name: "forwards from end is empty", from: store.End},
		{name: "backwards from end starts at the last", from: store.End, backwards: true, want: []uint64{5, 4, 3, 2, 1}},
		{name: "backwards from a position is exclusive", from: 3, backwards: true, want: []uint64{2, 1}},
		{name: "backwards from the first position is empty", from: 1, backwards: true},
		{name: "backwards from start is empty", from: 0, backwards: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []uint64
			for _, r := range MustReadAll(t, s, tc.from, tc.backwards) {
				got = append(got, r.Position)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestRecordsCarryEveryField(t *testing.T) {
	clock := newFakeClock()
	s := MustOpen(t, store.Options{InMemory: true, Now: clock.Now})
	e := store.Proposed{ID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, Type: "Typed",
		JSON: false, Data: []byte{0, 1, 2}, Metadata: []byte(`{"user":"meta"}`)}
	MustAppend(t, s, "other", any_, ev("X", "{}"))
	MustAppend(t, s, "s", any_, e)
	want := store.Record{Stream: "s", Revision: 0, Position: 2, ID: e.ID, Type: "Typed", JSON: false,
		Created: clock.Now(), Data: e.Data, Metadata: e.Metadata}
	all := MustReadAll(t, s, 2, false)
	if d := cmp.Diff([]store.Record{want}, all); d != "" {
		t.Errorf("ReadAll (-want +got):\n%s", d)
	}
	var got []store.Record
	err := s.ReadStream(context.Background(), "s", 0, false, func(r store.Record) bool {
		r.Data = append([]byte(nil), r.Data...)
		r.Metadata = append([]byte(nil), r.Metadata...)
		got = append(got, r)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]store.Record{want}, got); d != "" {
		t.Errorf("ReadStream (-want +got):\n%s", d)
	}
}

func TestDeleteWritesCurrentMetadataWithTruncateBefore(t *testing.T) {
	cases := []struct {
		name string
		meta string // "" for no metadata
		want string
	}{
		{"no metadata", "", `{"$tb":9223372036854775807}`},
		{"other keys are kept in order", `{"b":1,"a":{"x":[1,2]}}`, `{"b":1,"a":{"x":[1,2]},"$tb":9223372036854775807}`},
		{"an existing $tb is replaced in place", `{"$tb":3,"z":true}`, `{"$tb":9223372036854775807,"z":true}`},
		{"keys are not re-escaped", `{"<k&>":"v"}`, `{"<k&>":"v","$tb":9223372036854775807}`},
		{"metadata that is not an object is replaced", `[1,2]`, `{"$tb":9223372036854775807}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := MustOpen(t, store.Options{InMemory: true})
			MustAppend(t, s, "s", any_, ev("A", "{}"))
			if tc.meta != "" {
				MustAppend(t, s, "$$s", any_, ev(store.TypeMetadata, tc.meta))
			}
			MustDelete(t, s, "s", any_)
			got := MustReadStream(t, s, "$$s", 0, false)
			if len(got) != 1 || got[0].Data != tc.want {
				t.Errorf("metadata after delete = %+v, want data %s", got, tc.want)
			}
		})
	}
}

func TestTombstoneRecord(t *testing.T) {
	ctx := context.Background()
	t.Run("is the $streamDeleted record, found however far back, across a reopen", func(t *testing.T) {
		dir := t.TempDir()
		s, err := store.Open(store.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		MustAppend(t, s, "s", any_, ev("A", "{}"))
		res := MustTombstone(t, s, "s", any_)
		// Far more records after the tombstone than any backward scan of
		// $all would look at.
		batch := make([]store.Proposed, 1000)
		for i := 0; i < 12; i++ {
			for j := range batch {
				batch[j] = ev("B", "{}")
			}
			MustAppend(t, s, "other", any_, batch...)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = MustOpen(t, store.Options{Dir: dir})
		rec, err := s.TombstoneRecord(ctx, "s")
		if err != nil {
			t.Fatalf("TombstoneRecord: %v", err)
		}
		type view struct {
			Stream   string
			Revision uint64
			Position uint64
			Type     string
		}
		want := view{"s", store.TombstoneRevision, res.Position, store.TypeStreamDeleted}
		if d := cmp.Diff(want, view{rec.Stream, rec.Revision, rec.Position, rec.Type}); d != "" {
			t.Errorf("tombstone record (-want +got):\n%s", d)
		}
		if rec.ID == ([16]byte{}) || rec.Created.IsZero() {
			t.Errorf("tombstone record without id or created: %+v", rec)
		}
	})
	t.Run("of a stream that is not tombstoned is not found", func(t *testing.T) {
		s := MustOpen(t, store.Options{InMemory: true})
		MustAppend(t, s, "live", any_, ev("A", "{}"))
		MustAppend(t, s, "soft", any_, ev("A", "{}"))
		MustDelete(t, s, "soft", any_)
		MustTombstone(t, s, "hard", any_)
		for _, name := range []string{"live", "soft", "missing", "$$hard", "$$live"} {
			_, err := s.TombstoneRecord(ctx, name)
			if d := checkErr(err, store.ErrStreamNotFound); d != "" {
				t.Errorf("%s: %s", name, d)
			}
		}
		for _, name := range []string{"", "$all"} {
			_, err := s.TombstoneRecord(ctx, name)
			if d := checkErr(err, store.ErrInvalidArgument); d != "" {
				t.Errorf("%q: %s", name, d)
			}
		}
	})
}
