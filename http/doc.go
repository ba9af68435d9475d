// Package http is fleetjobs' HTTP edge (Echo): the server, its routes, and
// the one table that turns errors into statuses and problem+json bodies
// (RFC 9457). For now it serves the operational endpoints GET /healthz and
// GET /readyz; the API of API.md is added here, route by route, by later
// issues, all registered in routes.go.
//
// Handlers stay thin: bind, check shape, call, render. Errors are translated
// once, in errors.go, and only here (and in cmd) are they logged.
//
// It may import domain/..., commands and projections; never cmd, and not
// eventstore or its server directly: what it needs of them (a readiness
// probe, ...) is handed in by cmd/fleetjobs as small functions. Import it as
// fjhttp where it clashes with net/http.
package http
