package stream_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/ssegate/ssegate/internal/sse"
	"github.com/ssegate/ssegate/stream"
)

func TestAppendEventRoundTrip(t *testing.T) {
	const ep = stream.Epoch("ep")
	tests := []struct {
		name string
		data string
		want string // data as a browser sees it
	}{
		{"plain", `{"id":1}`, `{"id":1}`},
		{"empty", "", ""},
		{"LF lines", "a\nb\n\nc", "a\nb\n\nc"},
		{"CRLF lines", "a\r\nb", "a\nb"},
		{"CR lines", "a\rb", "a\nb"},
		{"trailing newline", "a\n", "a\n"},
		{"leading space kept", " x", " x"},
		{"unicode", "héllo ✓ 日本 🎉", "héllo ✓ 日本 🎉"},
		{"field-looking data", "id: 99\nevent: evil\n\ndata: x", "id: 99\nevent: evil\n\ndata: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := stream.AppendEvent(nil, ep, 7, stream.KindCreated, []byte(tt.data))
			r := sse.NewReader(bytes.NewReader(wire))
			ev, err := r.Next()
			if err != nil {
				t.Fatalf("parse %q: %v", wire, err)
			}
			if ev.Data != tt.want || ev.Type != "created" || ev.ID != "ep-7" {
				t.Errorf("got id %q type %q data %q, want id %q type %q data %q", ev.ID, ev.Type, ev.Data, "ep-7", "created", tt.want)
			}
			if _, err := r.Next(); err != io.EOF {
				t.Errorf("got extra event or error %v after one event, want EOF", err)
			}
		})
	}
}

func TestAppendEventWireFormat(t *testing.T) {
	got := string(stream.AppendEvent(nil, "ep", 3, stream.KindDeleted, []byte("a\nb")))
	want := "id: ep-3\nevent: deleted\ndata: a\ndata: b\n\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := string(stream.AppendRetry(nil, 3000)), "retry: 3000\n\n"; got != want {
		t.Errorf("retry: got %q, want %q", got, want)
	}
}

func TestEpochParse(t *testing.T) {
	const ep = stream.Epoch("abc")
	tests := []struct {
		in     string
		want   stream.ID
		wantOK bool
	}{
		{"abc-1", 1, true},
		{"abc-18446744073709551615", 18446744073709551615, true},
		{ep.Format(42), 42, true},
		{"", 0, false},
		{"abc-", 0, false},
		{"abc-0", 0, false},
		{"abc--1", 0, false},
		{"abc-1x", 0, false},
		{"abc-01", 0, false},                   // not what Format writes
		{"abd-1", 0, false},                    // another process
		{"abc-99999999999999999999", 0, false}, // overflow
		{"1", 0, false},
		{strings.Repeat("9", 100), 0, false},
	}
	for _, tt := range tests {
		got, ok := ep.Parse(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Parse(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestKindNames(t *testing.T) {
	want := []string{"snapshot", "created", "updated", "deleted", "patch"}
	for i, k := range stream.Kinds() {
		if k.String() != want[i] {
			t.Errorf("kind %d: got %q, want %q", i, k, want[i])
		}
		if strings.ContainsAny(k.String(), "\r\n") {
			t.Errorf("kind %d name contains a line break", i)
		}
	}
}
