package server

import (
	"context"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/gossip"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// MaxRecvMsgSize is the largest request message the server accepts. Every
// event is one AppendReq message and KurrentDB caps a log record at about
// 16 MiB, so the grpc-go default of 4 MiB would refuse legitimate events
// (§1, §14); 17 MiB is also the client's own inbound limit.
const MaxRecvMsgSize = 17 << 20

// appendBufferBudget bounds the memory that appends being received may
// buffer together: each append holds one of budget/MaxAppendSize slots (at
// least minAppendSlots) from its first event until the Log has answered,
// so a flood of concurrent appends waits for a slot (and HTTP/2 flow
// control pushes back on the clients) instead of growing memory with the
// number of callers.
const (
	appendBufferBudget = 256 << 20
	minAppendSlots     = 16
)

// streamWorkers is the number of goroutines that run calls: about the
// appends a busy client keeps in flight (an import runs 64 at once).
const streamWorkers = 128

// DefaultShutdownGrace is how long Shutdown waits for in-flight appends and
// other unary calls before it cuts every connection.
const DefaultShutdownGrace = 5 * time.Second

// Config configures a Server. The zero value is usable.
type Config struct {
	// MaxAppendSize limits one append: the sum of the event types, data
	// and custom metadata of all its events. 0 means DefaultMaxAppendSize.
	MaxAppendSize int
	// Logger receives the server's structured logs; nil means zap.NewNop().
	Logger *zap.Logger
	// Now is the clock for Gossip timestamps; nil means time.Now.
	Now func() time.Time
	// AdvertiseAddr is the host:port Gossip reports when it cannot tell
	// the address a client dialled (it normally can: the local address of
	// the client's connection).
	AdvertiseAddr string
	// ShutdownGrace bounds how long Shutdown waits for in-flight calls;
	// 0 means DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// MaxConcurrentAppends bounds the appends buffered at once; more wait
	// for a slot. 0 means 256 MiB / MaxAppendSize, at least 16.
	MaxConcurrentAppends int
}

// Server is the gRPC front of a Log: Streams (Read, Append, Delete,
// Tombstone), ServerFeatures and Gossip. Create it with New, run it with
// Serve and end it with Shutdown.
type Server struct {
	log        Log
	logger     *zap.Logger
	now        func() time.Time
	maxAppend  int
	advertise  string
	grace      time.Duration
	instanceID uuid.UUID
	grpc       *grpc.Server
	// appendSlots is a semaphore of appends allowed to buffer events (see
	// appendBufferBudget).
	appendSlots chan struct{}
	// appendBufs pools the *appendBuffer each Append decodes into.
	appendBufs sync.Pool

	// ctx is cancelled by Shutdown before the gRPC server stops: reads and
	// subscriptions watch it, because GracefulStop would otherwise wait for
	// a subscription forever (§8).
	ctx    context.Context
	cancel context.CancelFunc

	shutdownOnce sync.Once
}

// New returns a Server in front of log, with every gRPC option the official
// client needs (§1): a keepalive enforcement policy that tolerates the
// client's 10 s pings, a 17 MiB receive limit, and interceptors that turn a
// handler panic into an Internal error instead of a crashed process.
func New(log Log, cfg Config) *Server {
	logger := cfg.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	maxAppend := cfg.MaxAppendSize
	if maxAppend <= 0 {
		maxAppend = DefaultMaxAppendSize
	}
	grace := cfg.ShutdownGrace
	if grace <= 0 {
		grace = DefaultShutdownGrace
	}
	slots := cfg.MaxConcurrentAppends
	if slots <= 0 {
		slots = max(appendBufferBudget/maxAppend, minAppendSlots)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		appendSlots: make(chan struct{}, slots),
		log:         log,
		logger:      logger,
		now:         now,
		maxAppend:   maxAppend,
		advertise:   cfg.AdvertiseAddr,
		grace:       grace,
		instanceID:  uuid.New(),
		ctx:         ctx,
		cancel:      cancel,
	}
	s.appendBufs.New = func() any { return new(appendBuffer) }
	s.grpc = grpc.NewServer(
		// Append decodes its requests itself (see serverCodec).
		grpc.ForceServerCodecV2(newServerCodec()),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			// The client pings every 10 s even without streams; the
			// default policy (5 min, no idle pings) answers with GOAWAY
			// too_many_pings, which drops every subscription.
			MinTime:             5 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			// Detect dead peers of long-lived subscriptions.
			Time:    30 * time.Second,
			Timeout: 10 * time.Second,
		}),
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		// Calls run on reused goroutines, whose stacks have already grown
		// to what an append needs: a goroutine per call would grow (copy)
		// its stack on every append, a few percent of the CPU of a run of
		// single-event appends. More calls at once get goroutines of
		// their own.
		grpc.NumStreamWorkers(streamWorkers),
		grpc.ChainUnaryInterceptor(s.recoverUnary),
		grpc.ChainStreamInterceptor(s.recoverStream),
	)
	streams.RegisterStreamsServer(s.grpc, &streamsService{s: s})
	serverfeatures.RegisterServerFeaturesServer(s.grpc, &featuresService{s: s})
	gossip.RegisterGossipServer(s.grpc, &gossipService{s: s})
	return s
}

// Serve accepts connections on lis until Shutdown. It returns nil after a
// Shutdown, else the listener's error.
func (s *Server) Serve(lis net.Listener) error {
	if err := s.grpc.Serve(lis); err != nil && err != grpc.ErrServerStopped {
		return fmt.Errorf("serve %s: %w", lis.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting connections, ends every read and subscription
// (their clients see Unavailable), waits up to the configured grace for
// in-flight appends and other unary calls, then closes every connection.
// It is safe to call more than once and from several goroutines; later
// calls return when the first one has finished.
func (s *Server) Shutdown() {
	s.shutdownOnce.Do(func() {
		s.cancel()
		done := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(done)
		}()
		timer := time.NewTimer(s.grace)
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
			s.logger.Warn("shutdown grace elapsed; closing connections with calls in flight",
				zap.Duration("grace", s.grace))
			s.grpc.Stop()
			<-done
		}
	})
}

// recoverUnary is the last line of defence for unary calls: a panic in a
// handler is logged with its stack and answered with Internal.
func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("panic in gRPC handler", zap.String("method", info.FullMethod),
				zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			resp, err = nil, status.Error(codes.Internal, "internal error")
		}
	}()
	return handler(ctx, req)
}

// recoverStream is recoverUnary for streaming calls.
func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("panic in gRPC handler", zap.String("method", info.FullMethod),
				zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return handler(srv, ss)
}

// streamsService implements event_store.client.streams.Streams. BatchAppend
// stays with the embedded Unimplemented server: the Go client never calls
// it (§1).
type streamsService struct {
	streams.UnimplementedStreamsServer
	s *Server
}
