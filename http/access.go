package http

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
)

// Role is what an API key may do. Roles are ordered: each one may do
// everything the one before it may.
type Role string

// The roles of FLEETJOBS_API_KEYS.
const (
	// RoleAuditor reads: every GET of the API, nothing that records.
	RoleAuditor Role = "auditor"
	// RoleOperator reads and sends commands.
	RoleOperator Role = "operator"
	// RoleAdmin may do everything. No route is for admins alone: the
	// administrative work (rebuild, export) is done by fleetjobs commands
	// that read the log and Redis directly, not through the API.
	RoleAdmin Role = "admin"
)

// Roles lists the valid roles, weakest first.
func Roles() []Role { return []Role{RoleAuditor, RoleOperator, RoleAdmin} }

// APIKey is one entry of FLEETJOBS_API_KEYS.
type APIKey struct {
	Key  string
	Role Role
}

// ParseAPIKeys parses FLEETJOBS_API_KEYS: "key:role,key:role,...", with
// spaces around entries ignored. An empty or blank string means no keys.
// Errors name the entry by its number, never the key: keys are secrets and
// error messages end up in logs.
func ParseAPIKeys(v string) ([]APIKey, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var keys []APIKey
	seen := make(map[string]bool)
	for i, item := range strings.Split(v, ",") {
		// The role is after the last colon, so a key may hold colons.
		item = strings.TrimSpace(item)
		cut := strings.LastIndexByte(item, ':')
		if cut <= 0 {
			return nil, fmt.Errorf("entry %d: want key:role", i+1)
		}
		key, role := item[:cut], Role(item[cut+1:])
		switch {
		case !slices.Contains(Roles(), role):
			return nil, fmt.Errorf("entry %d: role %q: want one of auditor, operator, admin", i+1, role)
		case seen[key]:
			return nil, fmt.Errorf("entry %d: key listed twice", i+1)
		}
		seen[key] = true
		keys = append(keys, APIKey{Key: key, Role: role})
	}
	return keys, nil
}

// ErrExposed is returned (wrapped, with the address and the fix) when the
// server is asked to listen beyond loopback without API keys: anyone who
// could reach it could then command the fleet.
var ErrExposed = errors.New("refusing to listen beyond loopback without API keys")

// CheckListenAddr refuses, with ErrExposed, an address that is not loopback
// when no API keys are configured. Loopback means a loopback IP literal
// (127.0.0.0/8, ::1) or "localhost"; an empty host, 0.0.0.0, [::] and any
// other name count as exposed, since they may reach other machines.
func CheckListenAddr(addr string, haveKeys bool) error {
	if haveKeys || IsLoopback(addr) {
		return nil
	}
	return fmt.Errorf("%w: %q is not a loopback address; set FLEETJOBS_API_KEYS (key:role,... with role operator, auditor or admin) to require keys, or listen on loopback only, e.g. FLEETJOBS_HTTP_ADDR=127.0.0.1:8080", ErrExposed, addr)
}

// IsLoopback reports whether the host of addr (host:port) only reaches
// this machine.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// access is what a route demands of the caller.
type access int

const (
	accessOpen    access = iota // anyone: health, metrics, the OpenAPI document, the web page
	accessRead                  // auditor and up
	accessCommand               // operator and up
	accessAdmin                 // admin only
)

// allows reports whether role may use a route of access a.
func (r Role) allows(a access) bool {
	switch a {
	case accessOpen:
		return true
	case accessRead:
		return r == RoleAuditor || r == RoleOperator || r == RoleAdmin
	case accessCommand:
		return r == RoleOperator || r == RoleAdmin
	case accessAdmin:
		return r == RoleAdmin
	}
	return false
}

// ErrUnauthenticated is a request without a valid API key while keys are
// configured: 401. Its message says how to send one; the middleware wraps
// it with what was wrong.
var ErrUnauthenticated = errors.New(`a valid API key is required, sent as "Authorization: Bearer KEY" or "X-API-Key: KEY"`)

// ErrForbidden is a request whose key's role may not use the route: 403.
var ErrForbidden = errors.New("the API key's role may not do this")

// keyring holds the configured keys as SHA-256 digests. Comparing digests
// of fixed length in constant time leaks neither a key's contents nor its
// length through timing.
type keyring struct {
	entries []keyEntry
}

type keyEntry struct {
	digest [sha256.Size]byte
	role   Role
	actor  string // who the key is in event metadata: role and a digest prefix, never the key
}

func newKeyring(keys []APIKey) keyring {
	var k keyring
	for _, key := range keys {
		d := sha256.Sum256([]byte(key.Key))
		k.entries = append(k.entries, keyEntry{
			digest: d,
			role:   key.Role,
			actor:  "apikey:" + string(key.Role) + ":" + hex.EncodeToString(d[:4]),
		})
	}
	return k
}

func (k keyring) empty() bool { return len(k.entries) == 0 }

// lookup finds the entry of key. It compares against every entry, without
// stopping at a match, so the time taken says nothing about which one (or
// whether any) matched.
func (k keyring) lookup(key string) (keyEntry, bool) {
	d := sha256.Sum256([]byte(key))
	found := -1
	for i := range k.entries {
		if subtle.ConstantTimeCompare(d[:], k.entries[i].digest[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return keyEntry{}, false
	}
	return k.entries[found], true
}

// APIKeyHeader is the alternative to "Authorization: Bearer KEY", for
// clients that cannot set Authorization.
const APIKeyHeader = "X-API-Key"

// presentedKey is the key the request carries, if any, else why it has
// none (a sentence for the 401). An Authorization header takes precedence
// over X-API-Key.
func presentedKey(r *http.Request) (key string, ok bool, missing string) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, token, ok := strings.Cut(auth, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(token), true, ""
		}
		return "", false, "the Authorization header is not of the Bearer scheme"
	}
	if key := r.Header.Get(APIKeyHeader); key != "" {
		return key, true, ""
	}
	return "", false, "the request carries no API key"
}

// anonymousActor is the actor of requests when no keys are configured
// (the service then only listens on loopback).
const anonymousActor = "local"

// ctxActor is the echo.Context key of the caller's actor name.
const ctxActor = "fleetjobs.actor"

// authorize is the access middleware of one route.
func (s *Server) authorize(a access) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if a == accessOpen {
				return next(c)
			}
			if s.keys.empty() {
				c.Set(ctxActor, anonymousActor)
				return next(c)
			}
			key, ok, missing := presentedKey(c.Request())
			entry, found := s.keys.lookup(key)
			if !ok || !found {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="fleetjobs"`)
				if ok {
					missing = "the API key is not one of the service's"
				}
				return fmt.Errorf("%s: %w", missing, ErrUnauthenticated)
			}
			if !entry.role.allows(a) {
				return fmt.Errorf("%w: role %s may not %s %s", ErrForbidden, entry.role, c.Request().Method, openAPIPath(c.Path()))
			}
			c.Set(ctxActor, entry.actor)
			return next(c)
		}
	}
}

// actorOf is who sent the request, for event metadata.
func actorOf(c echo.Context) string {
	if a, ok := c.Get(ctxActor).(string); ok {
		return a
	}
	return anonymousActor
}
