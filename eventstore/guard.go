package eventstore

import (
	"context"
	"errors"
	"runtime"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// ErrConnectionLost is the error of a call whose connection the official
// client closed while the call waited for it (see survive). The call was
// not made; the caller retries it like any other failed call.
var ErrConnectionLost = errors.New("event store connection closed while the call waited for it")

// survive, deferred in a function that calls into the official client,
// turns the panic that client raises in a call waiting for its connection
// when that connection is closed into ErrConnectionLost; any other panic
// goes on. After a failed discovery (the store is down) the official
// client's connection loop is gone and calls queued behind the discovery
// wait for a connection nobody serves; closing it (observe replaces it,
// Close ends it) releases them by panicking in them: "send on closed
// channel" (EventStore-Client-Go issue #187). Without this, a store that
// goes away crashed the process (TestConcurrentCallsWhileTheStoreIsDown).
func survive(err *error) {
	r := recover()
	if r == nil {
		return
	}
	if re, ok := r.(runtime.Error); ok && re.Error() == "send on closed channel" {
		*err = ErrConnectionLost
		return
	}
	panic(r)
}

// The official client's calls that may wait for its connection, each
// under survive. Reading a stream's next event may too: a failed read asks
// the connection loop to reconnect.

func appendToStream(ctx context.Context, es *esdb.Client, stream string, opts esdb.AppendToStreamOptions, events ...esdb.EventData) (_ *esdb.WriteResult, err error) {
	defer survive(&err)
	return es.AppendToStream(ctx, stream, opts, events...)
}

func readStream(ctx context.Context, es *esdb.Client, stream string, opts esdb.ReadStreamOptions, count uint64) (_ *esdb.ReadStream, err error) {
	defer survive(&err)
	return es.ReadStream(ctx, stream, opts, count)
}

func readAll(ctx context.Context, es *esdb.Client, opts esdb.ReadAllOptions, count uint64) (_ *esdb.ReadStream, err error) {
	defer survive(&err)
	return es.ReadAll(ctx, opts, count)
}

func recv(rs *esdb.ReadStream) (_ *esdb.ResolvedEvent, err error) {
	defer survive(&err)
	return rs.Recv()
}

func subscribeToAll(ctx context.Context, es *esdb.Client, opts esdb.SubscribeToAllOptions) (_ *esdb.Subscription, err error) {
	defer survive(&err)
	return es.SubscribeToAll(ctx, opts)
}

// Unavailable reports whether err says the event store could not be
// reached (down, restarting, no leader, the connection lost): the call
// may succeed later, unlike a refusal. The HTTP layer answers these 503.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrConnectionLost) || errors.Is(err, ErrClosed) {
		return true
	}
	var e *esdb.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() {
	case esdb.ErrorUnavailable, esdb.ErrorCodeConnectionClosed, esdb.ErrorCodeNotLeader, esdb.ErrorCodeDeadlineExceeded:
		return true
	}
	return false
}
