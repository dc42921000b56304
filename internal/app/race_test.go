//go:build race

package app_test

// raceEnabled: the race detector slows the diff of a large body about
// fivefold (poller's scanner loops), so fewer polls fit in a test's time.
const raceEnabled = true
