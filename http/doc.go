// Package http is fleetjobs' HTTP edge (Echo): the server, its routes (all
// registered in routes.go), and the one table that turns errors into
// statuses and problem+json bodies (RFC 9457, errors.go).
//
// What every route gets from here:
//   - access (access.go): FLEETJOBS_API_KEYS keys, sent as "Authorization:
//     Bearer KEY" or X-API-Key, compared in constant time over SHA-256
//     digests; auditors read, operators read and command, admins do
//     everything; health, metrics, the OpenAPI document and the web page
//     are open. With no keys everything is allowed, and the server refuses
//     to listen beyond loopback (CheckListenAddr).
//   - strict request shape (bind.go, params.go): JSON bodies decoded
//     strictly (unknown fields, wrong types, trailing data, malformed JSON
//     are 400s naming the field as a path like "conditions[1].op"), body
//     limits (413), content types (415), IDs in paths, paging.
//   - read-your-writes (consistency.go): command answers carry
//     Fleetjobs-Consistency-Token; queries sent with it wait, bounded, on a
//     ConsistencyWaiter, else 503 with Retry-After.
//   - metrics (metrics.go): a Prometheus registry per server, request
//     counts and latencies by route template, and a place for other
//     packages' gauges and counters.
//   - the OpenAPI document (openapi.json, embedded), checked against the
//     routes by a test.
//   - the operator's web page (web.go, files in web/, embedded): "/" and
//     its assets under /ui/, open to anyone (it holds no data; the API
//     calls it makes from the browser carry the operator's key), served
//     with a strict Content-Security-Policy. Its routes are marked
//     Route.Page and are not part of the OpenAPI document; tests check
//     that every API path its JavaScript calls is a route.
//
// Handlers stay thin: bind, check shape, build a command or query, call,
// render. What they call is declared here, by its consumer (DeviceCommands,
// DeviceQueries, ConsistencyWaiter), with plain request and answer structs;
// cmd/fleetjobs adapts the commands and projections packages to them.
// Errors are translated once, in errors.go, and only here (and in cmd) are
// they logged.
//
// It may import domain/..., commands and projections; never cmd, and not
// eventstore or its server directly: what it needs of them (a readiness
// probe, the consistency wait, ...) is handed in by cmd/fleetjobs as small
// interfaces and functions, and consistency tokens cross this package as
// opaque strings. Import it as fjhttp where it clashes with net/http.
package http
