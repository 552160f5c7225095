//go:build race

package storetest

// raceEnabled: the race detector slows the stores tenfold; the longest
// tests run fewer rounds under it.
const raceEnabled = true
