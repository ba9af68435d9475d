package conformance

import (
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// DefaultMaxAppendSize is KurrentDB's default limit for one append (the sum of
// the event type, data and metadata sizes of all its events), which the suite
// assumes unless WithMaxAppendSize says otherwise.
const DefaultMaxAppendSize = 1 << 20

// Option adjusts what the suite expects of the server under test. Options
// only ever add assertions (or tune sizes): without any, the suite asserts
// what every KurrentDB-compatible server must do.
type Option func(*config)

// config is the suite's view of the server under test, built from Options.
type config struct {
	serverVersion       *esdb.ServerVersion
	noPersistentSubs    bool
	idempotentPositions bool
	maxAppendSize       int
	parallel            bool
}

// WithServerVersion makes the suite require GetServerVersion to report
// exactly v. Without it the suite only requires a parsable, non-zero version.
func WithServerVersion(v esdb.ServerVersion) Option {
	return func(c *config) { c.serverVersion = &v }
}

// WithoutPersistentSubscriptions makes the suite require that persistent
// subscriptions, which the server does not implement, answer cleanly with
// esdb.ErrorCodeUnsupportedFeature (gRPC Unimplemented) instead of hanging,
// panicking the client or falling back to HTTP.
func WithoutPersistentSubscriptions() Option {
	return func(c *config) { c.noPersistentSubs = true }
}

// WithIdempotentPositions makes the suite require that an idempotent retry
// (same event IDs at the same expected revision) returns the original
// positions, not only the original revision. KurrentDB does not promise this.
func WithIdempotentPositions() Option {
	return func(c *config) { c.idempotentPositions = true }
}

// WithMaxAppendSize tells the suite the server's limit for one append, when
// it is not DefaultMaxAppendSize.
func WithMaxAppendSize(n int) Option {
	return func(c *config) { c.maxAppendSize = n }
}

// WithSequentialTests runs the subtests one after another instead of in
// parallel; useful to read a failing server's logs. Parallel is the default
// because it both shortens the run and exercises the server under
// concurrent load, as production will.
func WithSequentialTests() Option {
	return func(c *config) { c.parallel = false }
}

// suite carries what every behaviour needs: the configuration and a way to
// get a connected client.
type suite struct {
	cfg     config
	connect func(t *testing.T) *esdb.Client
}

// behaviour is one pinned behaviour of the store: its name says what it
// pins, run asserts it with a fresh client.
type behaviour struct {
	name string
	run  func(t *testing.T, s *suite, c *esdb.Client)
}

// group is a named set of behaviours (one area of the protocol).
type group struct {
	name       string
	behaviours []behaviour
}

// Run runs the whole conformance suite against the server that connect
// reaches. connect is called once per subtest (and a few more times by
// subtests that want several connections); it must return a client that is
// closed when t ends (t.Cleanup).
func Run(t *testing.T, connect func(t *testing.T) *esdb.Client, opts ...Option) {
	t.Helper()
	cfg := config{maxAppendSize: DefaultMaxAppendSize, parallel: true}
	for _, o := range opts {
		o(&cfg)
	}
	s := &suite{cfg: cfg, connect: connect}

	groups := []group{
		{"Server", serverBehaviours()},
		{"Append", appendBehaviours()},
		{"ReadStream", readStreamBehaviours()},
		{"ReadAll", readAllBehaviours()},
		{"SubscribeToStream", streamSubscriptionBehaviours()},
		{"SubscribeToAll", allSubscriptionBehaviours()},
		{"Delete", deleteBehaviours()},
		{"Tombstone", tombstoneBehaviours()},
		{"Metadata", metadataBehaviours()},
		{"Links", linkBehaviours()},
		{"Concurrency", concurrencyBehaviours()},
		{"Connection", connectionBehaviours()},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			if s.cfg.parallel {
				t.Parallel()
			}
			for _, b := range g.behaviours {
				t.Run(b.name, func(t *testing.T) {
					if s.cfg.parallel {
						t.Parallel()
					}
					b.run(t, s, s.connect(t))
				})
			}
		})
	}
}
