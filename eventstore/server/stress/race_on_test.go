//go:build race

package stress_test

// raceEnabled is true when the tests run under the race detector, which
// slows the store (and its child processes) several times: big sizes shrink.
const raceEnabled = true
