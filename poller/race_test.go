//go:build race

package poller_test

// raceEnabled: the race detector slows the scanner loops about tenfold.
const raceEnabled = true
