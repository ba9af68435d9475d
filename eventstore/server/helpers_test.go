package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/fleetjobs/fleetjobs/eventstore/server"
)

// testServer is a running server under test.
type testServer struct {
	Addr  string
	URL   string
	Close func() error
}

// MustStart starts an event store (opts.Dir, or in memory) on a free
// loopback port and closes it when the test ends.
func MustStart(tb testing.TB, opts server.Options) *testServer {
	tb.Helper()
	if opts.Dir == "" {
		opts.InMemory = true
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	e, err := server.Start(context.Background(), opts)
	if err != nil {
		tb.Fatalf("start event store: %v", err)
	}
	ts := &testServer{Addr: e.Addr(), URL: e.URL(), Close: e.Close}
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Errorf("close event store: %v", err)
		}
	})
	return ts
}

// MustClient connects the official client to url.
func MustClient(tb testing.TB, url string) *esdb.Client {
	tb.Helper()
	cfg, err := esdb.ParseConnectionString(url)
	if err != nil {
		tb.Fatalf("parse %s: %v", url, err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(cfg)
	if err != nil {
		tb.Fatalf("new client: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// MustConn dials addr with a raw gRPC connection, for requests the official
// client would never send.
func MustConn(tb testing.TB, addr string) streams.StreamsClient {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return streams.NewStreamsClient(conn)
}

// grpcTrailer captures a unary call's trailers into out.
func grpcTrailer(out *map[string][]string) grpc.CallOption {
	return grpc.Trailer((*metadata.MD)(out))
}

// testContext is a context bounded well within the test's lifetime.
func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// jsonEvent is a valid JSON event of type typ.
func jsonEvent(typ string, i int) esdb.EventData {
	return esdb.EventData{
		EventID:     uuid.New(),
		EventType:   typ,
		ContentType: esdb.ContentTypeJson,
		Data:        fmt.Appendf(nil, `{"i":%d}`, i),
		Metadata:    []byte(`{"m":true}`),
	}
}

// MustAppend appends n JSON events to stream with the official client.
func MustAppend(tb testing.TB, c *esdb.Client, stream string, n int) *esdb.WriteResult {
	tb.Helper()
	events := make([]esdb.EventData, n)
	for i := range events {
		events[i] = jsonEvent("TestEvent", i)
	}
	res, err := c.AppendToStream(testContext(tb), stream, esdb.AppendToStreamOptions{}, events...)
	if err != nil {
		tb.Fatalf("append %d events to %s: %v", n, stream, err)
	}
	return res
}

// MustReadAll reads every event of $all forwards with the official client.
func MustReadAll(tb testing.TB, c *esdb.Client) []*esdb.ResolvedEvent {
	tb.Helper()
	rs, err := c.ReadAll(testContext(tb), esdb.ReadAllOptions{From: esdb.Start{}}, ^uint64(0))
	if err != nil {
		tb.Fatalf("read $all: %v", err)
	}
	defer rs.Close()
	var out []*esdb.ResolvedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatalf("read $all: %v", err)
		}
		out = append(out, ev)
	}
}

// structuredID is the structured wire form of id.
func structuredID(id uuid.UUID) *shared.UUID {
	most, least := esdb.UUIDAsInt64(id)
	return &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits: most, LeastSignificantBits: least,
	}}}
}

// appendOptions is the Options message of a raw append to stream with Any.
func appendOptions(stream string) *streams.AppendReq {
	return &streams.AppendReq{Content: &streams.AppendReq_Options_{Options: &streams.AppendReq_Options{
		StreamIdentifier:       &shared.StreamIdentifier{StreamName: []byte(stream)},
		ExpectedStreamRevision: &streams.AppendReq_Options_Any{Any: &shared.Empty{}},
	}}}
}

// proposed is a valid raw proposed event carrying data.
func proposed(data []byte) *streams.AppendReq {
	return &streams.AppendReq{Content: &streams.AppendReq_ProposedMessage_{ProposedMessage: &streams.AppendReq_ProposedMessage{
		Id:             structuredID(uuid.New()),
		Metadata:       map[string]string{"type": "Raw", "content-type": "application/octet-stream"},
		CustomMetadata: []byte{},
		Data:           data,
	}}}
}

// rawAppend sends msgs as one append and returns the response or error,
// with the trailers the server set.
func rawAppend(ctx context.Context, c streams.StreamsClient, msgs []*streams.AppendReq) (*streams.AppendResp, map[string][]string, error) {
	st, err := c.Append(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			break // the server answered early; CloseAndRecv has its status
		}
	}
	resp, err := st.CloseAndRecv()
	return resp, st.Trailer(), err
}

// readAllRequest is a raw forwards count read of $all.
func readAllRequest(count uint64) *streams.ReadReq {
	return &streams.ReadReq{Options: &streams.ReadReq_Options{
		StreamOption: &streams.ReadReq_Options_All{All: &streams.ReadReq_Options_AllOptions{
			AllOption: &streams.ReadReq_Options_AllOptions_Start{Start: &shared.Empty{}},
		}},
		CountOption:  &streams.ReadReq_Options_Count{Count: count},
		FilterOption: &streams.ReadReq_Options_NoFilter{NoFilter: &shared.Empty{}},
		UuidOption:   &streams.ReadReq_Options_UUIDOption{Content: &streams.ReadReq_Options_UUIDOption_Structured{Structured: &shared.Empty{}}},
	}}
}

// rawRead runs a read to its end and returns every response and the final
// error (nil for a clean end).
func rawRead(ctx context.Context, c streams.StreamsClient, req *streams.ReadReq) ([]*streams.ReadResp, map[string][]string, error) {
	st, err := c.Read(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	var out []*streams.ReadResp
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, st.Trailer(), nil
		}
		if err != nil {
			return out, st.Trailer(), err
		}
		out = append(out, m)
	}
}

// MustCountAll counts the events in $all through a raw read.
func MustCountAll(tb testing.TB, c streams.StreamsClient) int {
	tb.Helper()
	msgs, _, err := rawRead(testContext(tb), c, readAllRequest(^uint64(0)))
	if err != nil {
		tb.Fatalf("read $all: %v", err)
	}
	return len(msgs)
}
