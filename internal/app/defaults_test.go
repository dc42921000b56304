package app

import (
	"reflect"
	"testing"
	"time"

	"github.com/ssegate/ssegate/config"
	"github.com/ssegate/ssegate/fleet"
	"github.com/ssegate/ssegate/poller"
	"github.com/ssegate/ssegate/proxy"
	"github.com/ssegate/ssegate/stream"
)

// TestConfigDefaultsArePackageDefaults: a default is written once, in its
// package; the configuration's defaults, as app maps them, must say the same.
func TestConfigDefaultsArePackageDefaults(t *testing.T) {
	cfg, err := config.Load([]string{"SSEGATE_UPSTREAM_URL=http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}

	wantPoller := poller.DefaultOptions()
	// The library's zero LegacyInterval is "no load contract"; the gateway
	// promises one by default, as the README says.
	wantPoller.LegacyInterval = 60 * time.Second
	if got := pollerOptions(cfg); !reflect.DeepEqual(got, wantPoller) {
		t.Errorf("poller options from default config:\n got %+v\nwant %+v", got, wantPoller)
	}

	if got, want := hubOptions(cfg), stream.DefaultOptions(); !reflect.DeepEqual(got, want) {
		t.Errorf("hub options from default config:\n got %+v\nwant %+v", got, want)
	}

	// The fleet keeps the hub's history bounds; the rest of its options
	// are not configurable, so its own defaults apply.
	wantFleet := fleet.DefaultOptions()
	wantFleet.HistorySize, wantFleet.HistoryBytes = stream.DefaultOptions().HistorySize, stream.DefaultOptions().HistoryBytes
	wantFleet.Timeout = 0
	if got := fleetOptions(cfg); !reflect.DeepEqual(got, wantFleet) {
		t.Errorf("fleet options from default config:\n got %+v\nwant %+v", got, wantFleet)
	}

	want := proxy.DefaultStreamOptions()
	want.WriteTimeout = 0 // not configurable; proxy's default applies
	if got := streamOptions(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("stream options from default config:\n got %+v\nwant %+v", got, want)
	}
}

// TestUpstreamConcurrencyZeroIsNoCap: to an operator 0 means no cap, to
// poller it means its default, so app maps it.
func TestUpstreamConcurrencyZeroIsNoCap(t *testing.T) {
	cfg, err := config.Load([]string{"SSEGATE_UPSTREAM_URL=http://127.0.0.1:1", "SSEGATE_UPSTREAM_CONCURRENCY=0"})
	if err != nil {
		t.Fatal(err)
	}
	if got := pollerOptions(cfg).Concurrency; got != poller.NoLimit {
		t.Errorf("Concurrency = %d, want poller.NoLimit", got)
	}
}
