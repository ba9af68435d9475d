package server

import (
	"context"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
)

// Delete implements Streams.Delete, a soft delete (§7). The response always
// carries a position: the client dereferences it without a nil check.
func (h *streamsService) Delete(ctx context.Context, req *streams.DeleteReq) (*streams.DeleteResp, error) {
	opts := req.GetOptions()
	if opts == nil {
		return nil, invalidArgument("delete: options are missing")
	}
	name, err := streamName(opts.GetStreamIdentifier())
	if err != nil {
		return nil, err
	}
	exp, err := expectedFromDelete(opts)
	if err != nil {
		return nil, err
	}
	res, err := h.s.log.Delete(ctx, name, exp)
	if err != nil {
		return nil, h.s.toStatus(ctx, "delete", name, err)
	}
	return &streams.DeleteResp{PositionOption: &streams.DeleteResp_Position_{Position: &streams.DeleteResp_Position{
		CommitPosition: res.Position, PreparePosition: res.Position,
	}}}, nil
}

// Tombstone implements Streams.Tombstone, a hard delete (§7). Like Delete,
// the response always carries a position.
func (h *streamsService) Tombstone(ctx context.Context, req *streams.TombstoneReq) (*streams.TombstoneResp, error) {
	opts := req.GetOptions()
	if opts == nil {
		return nil, invalidArgument("tombstone: options are missing")
	}
	name, err := streamName(opts.GetStreamIdentifier())
	if err != nil {
		return nil, err
	}
	exp, err := expectedFromTombstone(opts)
	if err != nil {
		return nil, err
	}
	res, err := h.s.log.Tombstone(ctx, name, exp)
	if err != nil {
		return nil, h.s.toStatus(ctx, "tombstone", name, err)
	}
	return &streams.TombstoneResp{PositionOption: &streams.TombstoneResp_Position_{Position: &streams.TombstoneResp_Position{
		CommitPosition: res.Position, PreparePosition: res.Position,
	}}}, nil
}
