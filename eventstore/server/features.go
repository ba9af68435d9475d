package server

import (
	"context"
	"net"
	"strconv"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/gossip"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Lower-case full service names, as KurrentDB reports them (§1.2).
const (
	serviceStreams        = "event_store.client.streams.streams"
	serviceGossip         = "event_store.client.gossip.gossip"
	serviceServerFeatures = "event_store.client.server_features.serverfeatures"
)

// featuresService implements ServerFeatures.GetSupportedMethods.
type featuresService struct {
	serverfeatures.UnimplementedServerFeaturesServer
	s *Server
}

// GetSupportedMethods advertises exactly the methods this server
// implements: an advertised but unimplemented method turns into
// ErrorCodeUnsupportedFeature in the client with no fallback, and
// advertising persistent subscriptions would switch the client away from
// its (unavailable) HTTP fallback (§1.2).
func (f *featuresService) GetSupportedMethods(context.Context, *shared.Empty) (*serverfeatures.SupportedMethods, error) {
	return &serverfeatures.SupportedMethods{
		EventStoreServerVersion: Version,
		Methods: []*serverfeatures.SupportedMethod{
			{ServiceName: serviceStreams, MethodName: "read", Features: []string{"position", "events"}},
			{ServiceName: serviceStreams, MethodName: "append"},
			{ServiceName: serviceStreams, MethodName: "delete"},
			{ServiceName: serviceStreams, MethodName: "tombstone"},
			{ServiceName: serviceGossip, MethodName: "read"},
			{ServiceName: serviceServerFeatures, MethodName: "getsupportedmethods"},
		},
	}, nil
}

// gossipService implements a single-node Gossip.Read, so that
// esdb+discover:// and multi-host connection strings work (§1.3).
type gossipService struct {
	gossip.UnimplementedGossipServer
	s *Server
}

// Read answers with this node alone, as a live Leader. Its endpoint is the
// local address of the caller's connection, i.e. an address the caller can
// demonstrably reach, so the client does not redial elsewhere.
func (g *gossipService) Read(ctx context.Context, _ *shared.Empty) (*gossip.ClusterInfo, error) {
	addr := g.s.advertise
	if p, ok := peer.FromContext(ctx); ok && p.LocalAddr != nil {
		addr = p.LocalAddr.String()
	}
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "gossip: no advertised address: %v", err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "gossip: bad advertised port %q", portText)
	}
	return &gossip.ClusterInfo{Members: []*gossip.MemberInfo{{
		InstanceId:   uuidToProto(g.s.instanceID, false),
		TimeStamp:    g.s.now().UnixNano() / nanosPerTick,
		State:        gossip.MemberInfo_Leader,
		IsAlive:      true,
		HttpEndPoint: &gossip.EndPoint{Address: host, Port: uint32(port)},
	}}}, nil
}
