package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/fleetjobs/fleetjobs/eventstore"
)

// redisOptions turns FLEETJOBS_REDIS_URL into go-redis options. It takes
//
//   - redis://[user:pass@]host:port[/db] or rediss://... (TLS): one server;
//   - the same with several comma-separated hosts, redis://h1:6379,h2:6379:
//     a Redis Cluster (its seed nodes);
//   - several hosts and ?master=NAME: the Sentinels of master NAME
//     (redis://s1:26379,s2:26379/0?master=mymaster);
//   - go-redis's own cluster form, redis://h1:6379?addr=h2:6379&addr=h3:6379.
//
// Everything else go-redis's ParseURL accepts (timeouts, pool sizes in the
// query) applies to every form. One UniversalClient serves all of them, so
// nothing past this function knows which it is.
func redisOptions(raw string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse refuses "h1:6379,h2:6379" hosts in some forms; say what
		// is wanted rather than echo its message alone.
		return nil, fmt.Errorf("want redis://host:port[/db] or rediss://...: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("scheme %q: want redis or rediss", u.Scheme)
	}
	q := u.Query()
	master := q.Get("master")
	q.Del("master")
	hosts := strings.Split(u.Host, ",")
	for _, h := range hosts {
		if h == "" {
			return nil, errors.New("empty host in the host list")
		}
	}

	if len(hosts) == 1 && master == "" {
		if q.Has("addr") {
			co, err := redis.ParseClusterURL(raw)
			if err != nil {
				return nil, err
			}
			return &redis.UniversalOptions{
				Addrs: co.Addrs, Username: co.Username, Password: co.Password, TLSConfig: co.TLSConfig,
				DialTimeout: co.DialTimeout, ReadTimeout: co.ReadTimeout, WriteTimeout: co.WriteTimeout,
				PoolSize: co.PoolSize, IsClusterMode: true,
			}, nil
		}
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, err
		}
		return universal(o, []string{o.Addr}), nil
	}

	// Several hosts: parse the URL with the first one for the shared
	// settings (credentials, db, TLS, timeouts), then list them all.
	one := *u
	one.Host = hosts[0]
	one.RawQuery = q.Encode()
	o, err := redis.ParseURL(one.String())
	if err != nil {
		return nil, err
	}
	uo := universal(o, hosts)
	if master != "" {
		uo.MasterName = master
		return uo, nil
	}
	if o.DB != 0 {
		return nil, fmt.Errorf("database %d: Redis Cluster has only database 0", o.DB)
	}
	uo.IsClusterMode = true
	return uo, nil
}

// universal copies the settings of a one-server configuration to a
// UniversalOptions over addrs.
func universal(o *redis.Options, addrs []string) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs: addrs, DB: o.DB, Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		PoolSize: o.PoolSize, MinIdleConns: o.MinIdleConns, MaxRetries: o.MaxRetries,
		ClientName: o.ClientName,
	}
}

// openRedis connects to FLEETJOBS_REDIS_URL or, when it is empty, starts the
// embedded Redis-compatible server (miniredis) in-process on a free loopback
// port. The embedded one keeps its data in memory only: it starts empty, so
// the read models are rebuilt from the log at every start. It is for one
// machine and small fleets; a real Redis keeps the read models across
// restarts and is several times faster (PERFORMANCE.md).
func openRedis(rawURL string) (redis.UniversalClient, *miniredis.Miniredis, error) {
	if rawURL != "" {
		o, err := redisOptions(rawURL)
		if err != nil {
			return nil, nil, fmt.Errorf("FLEETJOBS_REDIS_URL: %w", err)
		}
		return redis.NewUniversalClient(o), nil, nil
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, nil, fmt.Errorf("start the embedded Redis: %w", err)
	}
	return redis.NewClient(&redis.Options{Addr: mr.Addr()}), mr, nil
}

// unreachable reports whether err is a dependency not answering, Redis or
// the event store: the HTTP edge answers those 503 with Retry-After.
func unreachable(err error) bool {
	return redisUnreachable(err) || eventstore.Unavailable(err)
}

// redisUnreachable reports whether err is Redis not answering (refused,
// dropped or timed-out connections, an exhausted pool, a closed client, a
// server still loading its data or a cluster or master down), rather than
// an answer: the HTTP edge answers those 503 with Retry-After, since
// trying again later may well work.
func redisUnreachable(err error) bool {
	var ne net.Error
	switch {
	case err == nil:
		return false
	case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrClosed):
		return true
	}
	for _, prefix := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}
