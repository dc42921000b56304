package stream_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssegate/ssegate/internal/promtest"
	"github.com/ssegate/ssegate/stream"
)

// TestConnectionsMax: the hub exports its cap on open streams, 0 for none,
// so that rules can warn before it is reached.
func TestConnectionsMax(t *testing.T) {
	for _, n := range []int{0, 7} {
		reg := prometheus.NewRegistry()
		h := stream.NewHub(idleSource{}, stream.Options{MaxConnections: n, Registerer: reg})
		if got := promtest.Value(t, reg, "ssegate_connections_max"); got != float64(n) {
			t.Errorf("MaxConnections %d: ssegate_connections_max = %v", n, got)
		}
		h.Close()
	}
}
