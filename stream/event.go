// Package stream is ssegate's hub: per stream key it keeps the current
// snapshot, an ordered log of change events with a bounded history for
// Last-Event-ID resume, and the subscribers that receive those events as
// Server-Sent Events (WHATWG HTML, "Server-sent events").
//
// A Source (the poller) publishes into a key through the Publisher interface;
// the HTTP front (package proxy) calls Hub.Subscribe and writes what the
// Subscription delivers. Each event is encoded to its wire bytes once and
// those bytes are shared by every subscriber. The hub never sees a request
// or a response: a Keyer names the key of a request's path, upstream URL
// and headers (which is why the package uses http.Header), and the status,
// headers and body of the answer are the proxy's.
package stream

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"strconv"
	"strings"
)

// Kind is an event's type, sent in the SSE "event" field. It is a closed set,
// so no event name can carry a CR or LF into the stream.
type Kind uint8

// The event kinds a source may publish.
const (
	KindSnapshot Kind = iota // the whole current body
	KindCreated              // a new item
	KindUpdated              // a changed item
	KindDeleted              // a removed item: {"<id field>": <id>}
	KindPatch                // an RFC 6902 JSON Patch from the previous body
	numKinds
)

var kindNames = [numKinds]string{"snapshot", "created", "updated", "deleted", "patch"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Kinds lists every kind, in order.
func Kinds() []Kind { return []Kind{KindSnapshot, KindCreated, KindUpdated, KindDeleted, KindPatch} }

// Change is what a source publishes: a kind and its payload.
type Change struct {
	Kind Kind
	Data []byte
}

// Event is a published change: its ID, its kind and its encoding on the
// wire, which is all that is kept of it. The wire bytes are shared by every
// subscriber and the history, so an event costs its payload once.
type Event struct {
	ID   ID
	Kind Kind
	wire []byte
}

// NewEvent encodes one event of epoch ep.
func NewEvent(ep Epoch, id ID, kind Kind, data []byte) *Event {
	return &Event{ID: id, Kind: kind, wire: AppendEvent(nil, ep, id, kind, data)}
}

// Wire is the event's SSE encoding, shared by every subscriber and the
// history: never modify it.
func (e *Event) Wire() []byte { return e.wire }

// Size is the event's encoded length, what it costs in the history.
func (e *Event) Size() int { return len(e.wire) }

// ID is an event's sequence number within one key's epoch. IDs of a key
// increase from 1 and are never reused within the epoch. On the wire an ID
// carries the epoch, so that an ID from another key, an earlier life of the
// key or another process is recognised as unknown instead of being confused
// with one of ours.
type ID uint64

// Epoch names one life of one key's event sequence. Each key draws a random
// epoch when it starts, so its IDs reveal nothing about other keys (how many
// events they had) and two processes never share one.
type Epoch string

// NewEpoch draws a random epoch: 64 bits from crypto/rand, in base 36.
func NewEpoch() Epoch {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	return Epoch(strconv.FormatUint(binary.BigEndian.Uint64(b[:]), 36))
}

// Format returns the wire form "<epoch>-<decimal id>".
func (ep Epoch) Format(id ID) string {
	return string(ep) + "-" + strconv.FormatUint(uint64(id), 10)
}

func (ep Epoch) appendID(dst []byte, id ID) []byte {
	dst = append(dst, ep...)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, uint64(id), 10)
}

// Parse reads a wire ID of this epoch. It reports false for anything else:
// empty, malformed, or from another process.
func (ep Epoch) Parse(s string) (ID, bool) {
	rest, ok := strings.CutPrefix(s, string(ep)+"-")
	if !ok || rest == "" || len(rest) > 20 || rest[0] == '0' { // only what Format writes
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	if err != nil || n == 0 {
		return 0, false
	}
	return ID(n), true
}

// AppendEvent appends the SSE encoding of one event to dst: an "id" line, an
// "event" line, one "data" line per line of data, and the blank line that
// dispatches it. Data is split at CRLF, CR and LF, the three line ends the
// WHATWG parser knows, so every byte of a multi-line payload arrives intact
// (line ends arrive as LF). An empty payload is sent as one empty data line,
// which browsers dispatch as an event with empty data.
func AppendEvent(dst []byte, ep Epoch, id ID, kind Kind, data []byte) []byte {
	dst = append(dst, "id: "...)
	dst = ep.appendID(dst, id)
	dst = append(dst, "\nevent: "...)
	dst = append(dst, kind.String()...)
	dst = append(dst, '\n')
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			dst = append(dst, "data: "...)
			dst = append(dst, data...)
			dst = append(dst, '\n')
			break
		}
		dst = append(dst, "data: "...)
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(dst, '\n')
}

// AppendRetry appends a "retry" field (milliseconds) and a blank line.
func AppendRetry(dst []byte, millis int64) []byte {
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, millis, 10)
	return append(dst, "\n\n"...)
}
