package stream

// History is the per-key history, for its own tests.
type History = history

// NewHistory is newHistory.
var NewHistory = newHistory
