package app_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssegate/ssegate/internal/jsonpatch"
)

// changingArray is an upstream whose answer at /big is a JSON array of
// about 1 MB that changes at the front, in the middle and at the end every
// period, and whose answer at /small is a small object that changes as
// often: another user's key, which must keep flowing meanwhile.
type changingArray struct {
	mu      sync.Mutex
	version int
	big     []byte
}

const bigLen = 130_000 // "1xxxxxx," each: about 1 MB, under SSEGATE_MAX_BODY_BYTES

func (c *changingArray) bump() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version++
	v := c.version
	var b bytes.Buffer
	b.Grow(bigLen * 8)
	b.WriteByte('[')
	mid := (v * 7919) % bigLen
	for i := range bigLen {
		if i > 0 {
			b.WriteByte(',')
		}
		n := 1_000_000 + i
		if i == 0 || i == mid || i == bigLen-1 {
			n = 2_000_000 + v
		}
		b.WriteString(strconv.Itoa(n))
	}
	if v%4 == 0 { // now and then the length changes too
		b.WriteString(",3000000")
	}
	b.WriteByte(']')
	c.big = b.Bytes()
}

func (c *changingArray) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	big, v := c.big, c.version
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/big":
		w.Write(big)
	case "/small":
		w.Write([]byte(`{"version":` + strconv.Itoa(v) + `}`))
	default:
		http.NotFound(w, r)
	}
}

// TestLargeArrayThroughListener: a 1 MB array changing every 200 ms and
// polled as often is diffed at a cost bounded by its size (before, auto's
// patch mode built a quadratic table and ran out of memory), its events
// turn the client's copy into the upstream's body, and another key's stream
// keeps getting its events meanwhile.
func TestLargeArrayThroughListener(t *testing.T) {
	if testing.Short() {
		t.Skip("polls a 1 MB body for 10 s")
	}
	up := &changingArray{}
	up.bump()
	srv := httptest.NewServer(up)
	defer srv.Close()
	g := startGateway(t, srv.URL, "SSEGATE_POLL_INTERVAL_MAX=200ms", "SSEGATE_LEGACY_INTERVAL=0")

	// The kernel's figure too where it can be read: the process's peak RSS,
	// reset here (Linux: clear_refs 5), so earlier tests do not count.
	hwm := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	var peak atomic.Uint64 // memory the Go runtime holds from the OS
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.Sys-m.HeapReleased > peak.Load() {
				peak.Store(m.Sys - m.HeapReleased)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	c := g.client(t)
	big := subscribe(t, c, g.base+"/big", "", "")
	small := subscribe(t, c, g.base+"/small", "", "")

	stop := make(chan struct{})
	changed := make(chan struct{})
	go func() {
		defer close(changed)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				up.bump()
			}
		}
	}()
	time.AfterFunc(10*time.Second, func() { close(stop) })

	// The client keeps its copy as a browser would: the snapshot, then each
	// patch applied to it.
	var doc any
	kinds := map[string]int{}
	smallEvents := 0
	apply := func(ev struct{ Type, Data string }) {
		kinds[ev.Type]++
		var err error
		switch ev.Type {
		case "snapshot":
			doc, err = jsonpatch.Decode([]byte(ev.Data))
		case "patch":
			doc, err = jsonpatch.Apply(doc, []byte(ev.Data))
		default:
			t.Fatalf("unexpected %s event on an array of numbers", ev.Type)
		}
		if err != nil {
			t.Fatalf("%s event: %v", ev.Type, err)
		}
	}
	drainSmall := func() {
		for {
			select {
			case _, ok := <-small.events:
				if !ok {
					t.Fatal("the other key's stream ended")
				}
				smallEvents++
			default:
				return
			}
		}
	}
	running := true
	for running {
		select {
		case ev, ok := <-big.events:
			if !ok {
				t.Fatal("the large array's stream ended")
			}
			apply(struct{ Type, Data string }{ev.Type, ev.Data})
		case <-changed:
			running = false
		case <-time.After(failAfter):
			t.Fatal("no event from the large array for a while")
		}
		drainSmall()
	}

	// The upstream is still now: the client's copy must become its body.
	up.mu.Lock()
	want, err := jsonpatch.Decode(up.big)
	up.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, _ := json.Marshal(want)
	deadline := time.Now().Add(failAfter)
	for {
		got, _ := json.Marshal(doc)
		if bytes.Equal(got, wantJSON) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client's copy (%d bytes) never matched the upstream's body (%d bytes) after %v events", len(got), len(wantJSON), kinds)
		}
		select {
		case ev := <-big.events:
			apply(struct{ Type, Data string }{ev.Type, ev.Data})
		case <-time.After(500 * time.Millisecond):
		}
	}
	drainSmall()
	close(stopSampling)
	<-sampled

	t.Logf("large array: %v events; other key: %d events; peak memory from the OS %d MB", kinds, smallEvents, peak.Load()>>20)
	// A poll whose diff outlasts the 200 ms interval folds the next change
	// into its successor: fewer events, still correct. Without the detector
	// about 40 of the 50 changes arrive; under it, on 2 busy vCPUs, 8 to 19.
	minEvents := 10
	if raceEnabled {
		minEvents = 4
	}
	if kinds["patch"]+kinds["snapshot"] < minEvents {
		t.Errorf("only %v events for 50 changes, want at least %d: the diff cannot keep up", kinds, minEvents)
	}
	if smallEvents < 10 {
		t.Errorf("the other key got %d events in 10 s of changes every 200 ms, want its stream to keep flowing", smallEvents)
	}
	if p := peak.Load(); p > 300<<20 {
		t.Errorf("peak memory %d MB, want under 300 MB", p>>20)
	}
	// The race detector's shadow memory is several times the heap: the
	// kernel's figure is checked without it. It counts the whole test
	// process: the gateway, its upstream and this client.
	if hwm && !raceEnabled {
		if kb := peakRSSKB(t); kb > 300<<10 {
			t.Errorf("peak RSS %d MB, want under 300 MB", kb>>10)
		} else {
			t.Logf("peak RSS %d MB (the whole test process)", kb>>10)
		}
	}
}

// peakRSSKB is the process's peak resident set (VmHWM) in KiB.
func peakRSSKB(t *testing.T) uint64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}
