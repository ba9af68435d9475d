// Package sim is a simulated fleet: an in-process dispatch.Transport whose
// devices answer after a short random delay and succeed, except a device
// whose properties hold "simFail" (a string: it fails with that message) or
// "simOffline": true (it never answers, so the dispatcher times it out).
// It is the FLEETJOBS_DEVICES=sim transport of API.md, for demos, tests and
// load tests.
//
// It plays a million devices without a goroutine per device: every answer
// waiting for its moment sits in one min-heap (some 80 bytes each), and one
// goroutine (Run) pops those that are due and hands them to the dispatcher in
// batches. Memory is bounded by Config.MaxPending answers; Send waits for room
// beyond that. Devices are stateless: a duplicate delivery (the same job ID,
// its operation ID) is answered again the same way, as a real device that
// drops the duplicate re-application still acknowledges it.
//
// It imports package dispatch (Delivery, Answer) and nothing else of the
// project: transports never import the domain.
package sim
