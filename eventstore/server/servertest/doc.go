// Package servertest holds test helpers for the event store server and for
// tests of its users. It imports the standard library only, so that the
// server's own tests may use it (the server is domain-blind).
package servertest
