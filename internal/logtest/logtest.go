// Package logtest holds what tests use to read what a component logged.
package logtest

import (
	"strings"
	"sync"
)

// Buffer is an io.Writer for a logger (or a child process's output) that
// the test reads while the writer goroutines still write.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is what was written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
