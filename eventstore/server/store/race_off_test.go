//go:build !race

package store_test

// raceEnabled shrinks the big tests: the race detector slows Pebble ~20x.
const raceEnabled = false
