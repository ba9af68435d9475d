// Package dispatch is the process manager that turns job events into device
// deliveries (write-ahead JobDevicesDispatched, then send), handles timeouts
// and reports device answers back as commands, never appending on its own
// behalf. Transports live in subpackages (mqtt, sim).
//
// It may import domain/... and eventstore; outcomes leave through a small
// interface that package commands satisfies.
package dispatch
