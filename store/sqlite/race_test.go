//go:build race

package sqlite

// raceEnabled: the race detector slows SQLite's pure-Go code tenfold; the
// longest tests run fewer rounds under it.
const raceEnabled = true
