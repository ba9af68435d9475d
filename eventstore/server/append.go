package server

import (
	"context"
	"errors"
	"io"
	"math"
	"strconv"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// Append implements Streams.Append (§4): one Options message, then the
// proposed events, then end of stream. Everything is validated, and the
// append size limit enforced, while the request streams in, so an oversized
// or malformed append is refused before it is all buffered; the Log sees
// only complete, valid batches, which it commits atomically.
func (h *streamsService) Append(stream streams.Streams_AppendServer) error {
	s := h.s
	ctx := stream.Context()

	buf := s.appendBufs.Get().(*appendBuffer)
	defer s.appendBufs.Put(buf)
	defer buf.reset()
	f := &buf.frame

	if err := stream.RecvMsg(f); err != nil {
		return recvStatus(err, "append: missing options")
	}
	opts := f.options
	if opts == nil {
		return invalidArgument("append: the first message must be Options")
	}
	name, err := streamName(opts.GetStreamIdentifier())
	if err != nil {
		return err
	}
	exp, err := expectedFromAppend(opts)
	if err != nil {
		return err
	}

	// Wait for an append slot before buffering any event: the number of
	// appends holding events in memory, hence that memory, stays bounded.
	select {
	case s.appendSlots <- struct{}{}:
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-s.ctx.Done():
		return status.Error(codes.Unavailable, "event store is shutting down")
	}
	defer func() { <-s.appendSlots }()

	size := 0
	for {
		err := stream.RecvMsg(f)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return recvStatus(err, "append")
		}
		if !f.proposed {
			if f.options != nil {
				return invalidArgument("append %s: Options sent twice", name)
			}
			return invalidArgument("append %s: expected a proposed message", name)
		}
		if err := f.evErr; err != nil {
			if errors.Is(err, errMissingMetadata) {
				return missingMetadata(ctx)
			}
			return err
		}
		ev := f.ev
		size += len(ev.Type) + len(ev.Data) + len(ev.Metadata)
		if size > s.maxAppend {
			return withTrailer(ctx,
				status.Errorf(codes.InvalidArgument, "Maximum Append Size of %d Exceeded.", s.maxAppend),
				trailerException, exceptionMaxAppendSize, trailerMaxAppendSize, strconv.Itoa(s.maxAppend))
		}
		buf.events = append(buf.events, ev)
	}

	res, err := s.log.Append(ctx, name, exp, buf.events)
	var wrong *store.WrongExpectedVersionError
	if errors.As(err, &wrong) {
		return stream.SendAndClose(&streams.AppendResp{Result: wrongExpectedVersion(exp, wrong)})
	}
	if err != nil {
		return s.toStatus(ctx, "append", name, err)
	}
	buf.answer = appendAnswer(res)
	return stream.SendMsg(&buf.answer) // what SendAndClose does, for this form
}

// appendBuffer is what one Append call decodes into, pooled by the server
// (Server.appendBufs): in steady state an append allocates nothing per
// event. The Log copies what it keeps before Append returns, so the buffer
// is reused at once.
type appendBuffer struct {
	frame  appendFrame
	events []store.Proposed
	answer appendAnswer // encoded by SendMsg before it returns
}

// maxPooledEvents bounds the events array a pooled buffer keeps.
const maxPooledEvents = 1 << 14

// reset empties the buffer for the next append.
func (b *appendBuffer) reset() {
	clear(b.events)
	b.events = b.events[:0]
	if cap(b.events) > maxPooledEvents {
		b.events = nil
	}
	b.frame.reset()
}

// errMissingMetadata is returned by appendFrame.event when "type" or
// "content-type" is missing; the handler answers it with missingMetadata.
var errMissingMetadata = errors.New("required metadata properties are missing")

// missingMetadata is KurrentDB's answer to an event without "type" or
// "content-type" (§3), trailers included.
func missingMetadata(ctx context.Context) error {
	return withTrailer(ctx,
		status.Error(codes.InvalidArgument, "Required metadata properties are missing: type, content-type"),
		trailerException, exceptionMissingMetadata, trailerRequiredMetadata, metaType+","+metaContentType)
}

// wrongExpectedVersion encodes the status-OK body of a refused append,
// filling both the current fields (which the Go client reads) and the legacy
// *_20_6_0 ones (which other clients may read). KurrentDB sends MaxUint64 as
// the legacy expected revision for "no stream" (§14).
func wrongExpectedVersion(exp store.Expected, e *store.WrongExpectedVersionError) *streams.AppendResp_WrongExpectedVersion_ {
	w := &streams.AppendResp_WrongExpectedVersion{}
	if e.CurrentNoStream {
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_NoStream_20_6_0{NoStream_20_6_0: &shared.Empty{}}
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
	} else {
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_CurrentRevision_20_6_0{CurrentRevision_20_6_0: e.CurrentRevision}
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: e.CurrentRevision}
	}
	switch exp.Kind {
	case store.ExpectAny:
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_Any_20_6_0{Any_20_6_0: &shared.Empty{}}
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: &shared.Empty{}}
	case store.ExpectStreamExists:
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_StreamExists_20_6_0{StreamExists_20_6_0: &shared.Empty{}}
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: &shared.Empty{}}
	case store.ExpectNoStream:
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: math.MaxUint64}
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: &shared.Empty{}}
	default:
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: exp.Revision}
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: exp.Revision}
	}
	return &streams.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: w}
}

// recvStatus maps a receive error: a gRPC status passes through (the
// client cancelled, the message was too large...), and an early end of
// stream is a malformed request.
func recvStatus(err error, what string) error {
	if errors.Is(err, io.EOF) {
		return invalidArgument("%s", what)
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Errorf(codes.Unknown, "%s: %v", what, err)
}
