// Package sse reads an event stream the way a browser's EventSource does
// (WHATWG HTML, "Server-sent events", §9.2.6 "Interpreting an event
// stream"). Tests and the benchmark client use it so that they accept
// exactly what a browser accepts.
package sse

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"
)

// Event is one dispatched event.
type Event struct {
	ID    string // the last event ID in force when it was dispatched
	Type  string // "message" when no event field was given
	Data  string
	Retry int // the last retry field in force, in ms; 0 when none
}

// Reader parses an event stream.
type Reader struct {
	r       *bufio.Reader
	lastID  string
	retry   int
	started bool
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 64<<10)} }

// Next returns the next dispatched event. At the end of the stream it
// returns io.EOF; an incomplete event at the end is discarded, as browsers
// do.
func (p *Reader) Next() (Event, error) {
	var (
		data    strings.Builder
		hasData bool
		typ     string
	)
	for {
		line, err := p.readLine()
		if err != nil {
			return Event{}, err
		}
		if line == "" { // dispatch
			if !hasData {
				typ = ""
				continue
			}
			d := data.String()
			d = strings.TrimSuffix(d, "\n")
			if typ == "" {
				typ = "message"
			}
			return Event{ID: p.lastID, Type: typ, Data: d, Retry: p.retry}, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			typ = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
			hasData = true
		case "id":
			if !strings.Contains(value, "\x00") {
				p.lastID = value
			}
		case "retry":
			if n, err := strconv.Atoi(value); err == nil && n >= 0 && strings.Trim(value, "0123456789") == "" {
				p.retry = n
			}
		}
	}
}

// readLine returns one line without its end; lines end at CRLF, LF or CR.
func (p *Reader) readLine() (string, error) {
	var buf bytes.Buffer
	for {
		b, err := p.r.ReadByte()
		if err != nil {
			return "", err
		}
		if !p.started {
			p.started = true
			if b == 0xEF { // a UTF-8 BOM at the very start is skipped
				if rest, err := p.r.Peek(2); err == nil && rest[0] == 0xBB && rest[1] == 0xBF {
					_, _ = p.r.Discard(2)
					continue
				}
			}
		}
		switch b {
		case '\n':
			return buf.String(), nil
		case '\r':
			if next, err := p.r.Peek(1); err == nil && next[0] == '\n' {
				_, _ = p.r.Discard(1)
			}
			return buf.String(), nil
		}
		buf.WriteByte(b)
	}
}

// Follow reads the events of r in a goroutine into a channel of the given
// buffer, closed when the stream ends or fails: how a test watches a stream
// while it does other things. The caller closes r to stop it.
func Follow(r io.Reader, buffer int) <-chan Event {
	events := make(chan Event, buffer)
	go func() {
		defer close(events)
		p := NewReader(r)
		for {
			ev, err := p.Next()
			if err != nil {
				return
			}
			events <- ev
		}
	}()
	return events
}
