package stream_test

import (
	"testing"

	"github.com/ssegate/ssegate/stream"
)

var sink []byte

func BenchmarkAppendEvent(b *testing.B) {
	data := []byte(`{"id":1234567,"title":"Notification 1234567","body":"Someone commented on your post about item 1234567.","read":false,"created_at":"2026-11-24T07:12:00Z"}`)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		sink = stream.AppendEvent(buf[:0], "mwud935r", 1234567, stream.KindCreated, data)
	}
}
