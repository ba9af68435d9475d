package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// Trailer keys and values of KurrentDB's error model (§3). The client keys
// its error codes on "exception".
const (
	trailerException         = "exception"
	trailerStreamName        = "stream-name"
	trailerExpectedVersion   = "expected-version"
	trailerActualVersion     = "actual-version"
	trailerMaxAppendSize     = "maximum-append-size"
	trailerRequiredMetadata  = "required-metadata-properties"
	exceptionStreamDeleted   = "stream-deleted"
	exceptionWrongExpected   = "wrong-expected-version"
	exceptionMaxAppendSize   = "maximum-append-size-exceeded"
	exceptionMissingMetadata = "missing-required-metadata-property"
)

// invalidArgument is a request the protocol refuses before it reaches the Log.
func invalidArgument(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// withTrailer attaches KurrentDB's trailers to the call and returns err.
// grpc.SetTrailer works for streaming calls too, as long as ctx derives from
// the call's context.
func withTrailer(ctx context.Context, err error, kv ...string) error {
	for i := 1; i < len(kv); i += 2 {
		kv[i] = headerSafe(kv[i])
	}
	// SetTrailer fails only when the call is already finished; the status
	// still goes out (or nowhere), so there is nothing better to do.
	_ = grpc.SetTrailer(ctx, metadata.Pairs(kv...))
	return err
}

// headerSafe percent-encodes the bytes an HTTP/2 header value cannot hold:
// control characters other than tab, and DEL. A stream name may contain
// anything, and one invalid trailer makes the client drop all of them: it
// would then see an Internal error instead of, say, stream-deleted. Every
// other name, '%' included, goes out unchanged.
func headerSafe(v string) string {
	safe := func(b byte) bool { return (b >= ' ' || b == '\t') && b != 0x7f }
	clean := true
	for i := 0; i < len(v) && clean; i++ {
		clean = safe(v[i])
	}
	if clean {
		return v
	}
	const hex = "0123456789ABCDEF"
	out := make([]byte, 0, len(v)+8)
	for i := 0; i < len(v); i++ {
		if b := v[i]; safe(b) {
			out = append(out, b)
		} else {
			out = append(out, '%', hex[b>>4], hex[b&0xf])
		}
	}
	return string(out)
}

// streamDeleted is the status of every operation on a tombstoned stream.
// The client indexes trailers["stream-name"][0] without a length check, so
// the trailer must always be present (§3).
func streamDeleted(ctx context.Context, stream string) error {
	return withTrailer(ctx,
		status.Errorf(codes.FailedPrecondition, "Event stream '%s' is deleted.", stream),
		trailerException, exceptionStreamDeleted, trailerStreamName, stream)
}

// int64Revision renders a stream's current revision in KurrentDB's int64
// convention: -1 for no stream.
func int64Revision(noStream bool, rev uint64) string {
	if noStream {
		return "-1"
	}
	return strconv.FormatUint(rev, 10)
}

// toStatus translates an error of the Log into the gRPC status the client
// expects, setting trailers on ctx's call where KurrentDB does. op names the
// call for the log. Unexpected errors are logged once, here, at the edge.
func (s *Server) toStatus(ctx context.Context, op, stream string, err error) error {
	var deleted *store.StreamDeletedError
	var wrong *store.WrongExpectedVersionError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &deleted):
		return streamDeleted(ctx, deleted.Stream)
	case errors.As(err, &wrong):
		// Delete and Tombstone only: Append answers in its response body.
		actual := int64Revision(wrong.CurrentNoStream, wrong.CurrentRevision)
		return withTrailer(ctx,
			status.Errorf(codes.FailedPrecondition,
				"Append failed due to WrongExpectedVersion. Stream: %s, Expected version: %s, Actual version: %s",
				wrong.Stream, wrong.Expected, actual),
			trailerException, exceptionWrongExpected, trailerStreamName, wrong.Stream,
			trailerExpectedVersion, wrong.Expected.String(), trailerActualVersion, actual)
	case errors.Is(err, store.ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, store.ErrStreamNotFound):
		return status.Errorf(codes.NotFound, "stream '%s' not found", stream)
	case errors.Is(err, store.ErrReadOnly):
		return status.Error(codes.FailedPrecondition, "event store is read-only: writes are refused")
	case errors.Is(err, store.ErrClosed):
		return status.Error(codes.Unavailable, "event store is shutting down")
	case errors.Is(err, context.Canceled):
		if s.ctx.Err() != nil {
			return status.Error(codes.Unavailable, "event store is shutting down")
		}
		return status.Error(codes.Canceled, "call cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	default:
		s.logger.Error("event store call failed", zap.String("op", op),
			zap.String("stream", stream), zap.Error(err))
		return status.Error(codes.Internal, fmt.Sprintf("%s %s: %v", op, stream, err))
	}
}
