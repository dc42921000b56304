// Package bench measures an SSE gateway the way its users load it: N
// event streams over HTTP/2 TLS, one connection each (separate browsers) or
// multiplexed (tabs of one browser), or over HTTP/1.1, one connection each
// (behind a load balancer), spread over K identities; one change
// at a time in an upstream the benchmark controls, timed to every client.
// cmd/ssebench is its command line; a smoke test runs it in CI.
package bench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssegate/ssegate/internal/legacyapi"
	"github.com/ssegate/ssegate/internal/sse"
	"github.com/ssegate/ssegate/nudge/nudgeapi"
)

// Options describe one run.
type Options struct {
	// URL is the event stream to open, e.g. https://127.0.0.1:8443/api/notifications.
	URL string
	// URLs, when set, are the event stream URLs of several gateways (a
	// fleet); the clients are spread over them in turn, and URL is unused.
	URLs []string
	// Clients is how many streams to open.
	Clients int
	// Users is how many identities the clients are spread over (round robin).
	Users int
	// Multiplex puts up to StreamsPerConn streams on one HTTP/2 connection;
	// otherwise every client has its own TLS connection.
	Multiplex      bool
	StreamsPerConn int
	// HTTP1 opens every stream on its own HTTP/1.1 connection, as a load
	// balancer in front of the server does: over TLS for an https URL,
	// cleartext for an http one. Not with Multiplex.
	HTTP1 bool
	// Changes is how many changes to time, one after another.
	Changes int
	// ChangeUsers is how many users each change touches (default all); each
	// change adds one item to each of them.
	ChangeUsers int
	// Change makes change number n for the given users and returns when it
	// happened; Nudge (optional) then tells the gateway.
	Change func(ctx context.Context, n int, users []string) (time.Time, error)
	// Timeout bounds the wait for one change to reach every client.
	Timeout time.Duration
	// Pause is the wait between two changes (a soak: Changes × Pause).
	Pause time.Duration
	// OpenConcurrency bounds handshakes in flight while opening.
	OpenConcurrency int
	// Metrics, when set, is the gateway's /metrics URL, read before and after.
	Metrics string
	// LegacyInterval is the interval of the polling page ssegate replaces,
	// for the "direct polling" comparison.
	LegacyInterval time.Duration
	// UpstreamPolls, when set, counts the upstream's polls (for the comparison).
	UpstreamPolls func() int
	// FetchedAt, when set, tells when the gateway fetched a user's change:
	// fan-out latency is measured from then.
	FetchedAt func(user string) (time.Time, bool)
	// Log receives progress lines; nil: none.
	Log io.Writer
}

// UserName is the identity of client i's user.
func UserName(i int) string { return fmt.Sprintf("user-%d", i) }

// Report is the result of a run.
type Report struct {
	Clients       int     `json:"clients"`
	Users         int     `json:"users"`
	Multiplex     bool    `json:"multiplex"`
	HTTP1         bool    `json:"http1,omitempty"`
	Connections   int     `json:"connections"`
	Opened        int     `json:"opened"`
	Failed        int     `json:"failed"`
	OpenSeconds   float64 `json:"open_seconds"`
	Changes       int     `json:"changes"`
	Expected      int     `json:"deliveries_expected"`
	Delivered     int     `json:"deliveries"`
	Missing       int     `json:"deliveries_missing"`
	Duplicates    int     `json:"deliveries_duplicated"`
	LatencyP50MS  float64 `json:"latency_p50_ms"`
	LatencyP99MS  float64 `json:"latency_p99_ms"`
	LatencyMaxMS  float64 `json:"latency_max_ms"`
	FanoutP50MS   float64 `json:"fanout_p50_ms,omitempty"`
	FanoutP99MS   float64 `json:"fanout_p99_ms,omitempty"`
	FanoutMaxMS   float64 `json:"fanout_max_ms,omitempty"`
	WindowSeconds float64 `json:"window_seconds"`

	RSSPerConnKB   float64 `json:"rss_per_connection_kb,omitempty"`
	RSSPerStreamKB float64 `json:"rss_per_stream_kb,omitempty"`
	HeapPerStream  float64 `json:"heap_per_stream_kb,omitempty"`
	StackPerStream float64 `json:"stack_per_stream_kb,omitempty"`
	RSSMB          float64 `json:"rss_mb,omitempty"`
	Goroutines     float64 `json:"goroutines,omitempty"`
	OpenFDs        float64 `json:"open_fds,omitempty"`
	// At the end of the run, to compare with the idle figures above.
	RSSEndMB       float64 `json:"rss_end_mb,omitempty"`
	GoroutinesEnd  float64 `json:"goroutines_end,omitempty"`
	OpenFDsEnd     float64 `json:"open_fds_end,omitempty"`
	CPUPer1kEvents float64 `json:"cpu_seconds_per_1k_events,omitempty"`

	UpstreamPolls    int     `json:"upstream_polls,omitempty"`
	UpstreamRPS      float64 `json:"upstream_rps,omitempty"`
	DirectPolls      float64 `json:"direct_polling_requests,omitempty"`
	DirectPollingRPS float64 `json:"direct_polling_rps,omitempty"`
}

// client is one stream.
type client struct {
	user    string
	mu      sync.Mutex
	arrived map[int]time.Time // item id -> arrival
	dups    int
	err     error
	ready   chan struct{} // closed at the first event (the snapshot)
}

// Run opens the clients, times the changes and reports.
func Run(ctx context.Context, o Options) (Report, error) {
	if o.Users <= 0 {
		o.Users = 1
	}
	if o.StreamsPerConn <= 0 {
		o.StreamsPerConn = 100
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.OpenConcurrency <= 0 {
		o.OpenConcurrency = 64
	}
	if o.ChangeUsers <= 0 || o.ChangeUsers > o.Users {
		o.ChangeUsers = o.Users
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	if o.HTTP1 && o.Multiplex {
		return Report{}, errors.New("bench: HTTP/1.1 streams cannot be multiplexed")
	}
	rep := Report{Clients: o.Clients, Users: o.Users, Multiplex: o.Multiplex, HTTP1: o.HTTP1, Changes: o.Changes}

	before := scrape(o.Metrics)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// One transport per connection: per client, or per StreamsPerConn clients.
	var transports []*http.Transport
	newTransport := func() *http.Transport {
		tr := insecureTransport()
		tr.MaxConnsPerHost = 1
		if o.HTTP1 {
			tr.ForceAttemptHTTP2 = false
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // no h2 in ALPN
		}
		transports = append(transports, tr)
		return tr
	}
	defer func() {
		for _, tr := range transports {
			tr.CloseIdleConnections()
		}
	}()
	clients := make([]*client, o.Clients)
	urls := o.URLs
	if len(urls) == 0 {
		urls = []string{o.URL}
	}
	// One site name for a fleet, as behind a balancer: the forwarded host
	// is part of a stream's key, and replicas share the keys of one site.
	host := ""
	if len(urls) > 1 {
		host = "fleet.bench"
	}
	var tr *http.Transport
	trs := make([]*http.Transport, o.Clients)
	for i := range clients {
		if !o.Multiplex || i%o.StreamsPerConn == 0 {
			tr = newTransport()
		}
		trs[i] = tr
		clients[i] = &client{user: UserName(i % o.Users), arrived: map[int]time.Time{}, ready: make(chan struct{})}
	}
	rep.Connections = len(transports)

	logf("opening %d streams over %d connections", o.Clients, len(transports))
	start := time.Now()
	sem := make(chan struct{}, o.OpenConcurrency)
	var opened, failed atomic.Int64
	var wg sync.WaitGroup
	for i, c := range clients {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.open(ctx, trs[i], urls[i%len(urls)], host, o.HTTP1)
			<-sem
			if err != nil {
				failed.Add(1)
				c.err = err
				return
			}
			opened.Add(1)
		}()
		// In multiplexed mode the first stream must create the connection
		// before the others share it.
		if o.Multiplex && i%o.StreamsPerConn == 0 {
			select {
			case <-c.ready:
			case <-time.After(o.Timeout):
			}
		}
	}
	waitAll := func() {
		for _, c := range clients {
			select {
			case <-c.ready:
			case <-time.After(o.Timeout):
				return
			}
		}
	}
	waitAll()
	rep.OpenSeconds = time.Since(start).Seconds()
	// A stream's first event can arrive (closing ready) before its opening
	// goroutine has counted it: wait for the counts too, within the timeout.
	counted := make(chan struct{})
	go func() { wg.Wait(); close(counted) }()
	select {
	case <-counted:
	case <-time.After(o.Timeout):
	}
	rep.Opened, rep.Failed = int(opened.Load()), int(failed.Load())
	for _, c := range clients {
		if c.err != nil {
			logf("first failure: %v", c.err)
			break
		}
	}
	logf("opened %d, failed %d in %.1fs", rep.Opened, rep.Failed, rep.OpenSeconds)

	time.Sleep(time.Second) // let the gateway settle before reading memory
	idle := scrape(o.Metrics)
	polls0 := 0
	if o.UpstreamPolls != nil {
		polls0 = o.UpstreamPolls()
	}
	window := time.Now()

	// Changes, one at a time; each adds item id for ChangeUsers users.
	var latencies, fanout []time.Duration
	byUser := map[string][]*client{}
	for _, c := range clients {
		if c.err == nil {
			byUser[c.user] = append(byUser[c.user], c)
		}
	}
	for n := 1; n <= o.Changes; n++ {
		if n > 1 && o.Pause > 0 {
			time.Sleep(o.Pause)
		}
		users := make([]string, 0, o.ChangeUsers)
		for u := range o.ChangeUsers {
			users = append(users, UserName((n*o.ChangeUsers+u)%o.Users))
		}
		at, err := o.Change(ctx, n, users)
		if err != nil {
			return rep, fmt.Errorf("change %d: %w", n, err)
		}
		id := ItemID(n)
		deadline := time.Now().Add(o.Timeout)
		for _, u := range users {
			for _, c := range byUser[u] {
				rep.Expected++
				t, ok := c.waitFor(id, deadline)
				if !ok {
					rep.Missing++
					continue
				}
				rep.Delivered++
				latencies = append(latencies, t.Sub(at))
			}
			if o.FetchedAt != nil {
				if ft, ok := o.FetchedAt(u); ok {
					for _, c := range byUser[u] {
						if t, ok := c.waitFor(id, time.Time{}); ok {
							fanout = append(fanout, t.Sub(ft))
						}
					}
				}
			}
		}
		logf("change %d: delivered to %d of %d clients", n, rep.Delivered, rep.Expected)
	}
	rep.WindowSeconds = time.Since(window).Seconds()
	for _, c := range clients {
		c.mu.Lock()
		rep.Duplicates += c.dups
		c.mu.Unlock()
	}
	after := scrape(o.Metrics)

	rep.LatencyP50MS, rep.LatencyP99MS, rep.LatencyMaxMS = percentiles(latencies)
	rep.FanoutP50MS, rep.FanoutP99MS, rep.FanoutMaxMS = percentiles(fanout)
	if before != nil && idle != nil && rep.Opened > 0 {
		rss := idle["process_resident_memory_bytes"] - before["process_resident_memory_bytes"]
		rep.RSSPerStreamKB = rss / 1024 / float64(rep.Opened)
		rep.RSSPerConnKB = rss / 1024 / float64(rep.Connections)
		rep.HeapPerStream = (idle["go_memstats_heap_inuse_bytes"] - before["go_memstats_heap_inuse_bytes"]) / 1024 / float64(rep.Opened)
		rep.StackPerStream = (idle["go_memstats_stack_inuse_bytes"] - before["go_memstats_stack_inuse_bytes"]) / 1024 / float64(rep.Opened)
		rep.RSSMB = idle["process_resident_memory_bytes"] / (1 << 20)
		rep.Goroutines = idle["go_goroutines"]
		rep.OpenFDs = idle["process_open_fds"]
	}
	if after != nil {
		rep.RSSEndMB = after["process_resident_memory_bytes"] / (1 << 20)
		rep.GoroutinesEnd = after["go_goroutines"]
		rep.OpenFDsEnd = after["process_open_fds"]
	}
	if idle != nil && after != nil && rep.Delivered > 0 {
		rep.CPUPer1kEvents = (after["process_cpu_seconds_total"] - idle["process_cpu_seconds_total"]) / float64(rep.Delivered) * 1000
	}
	if o.UpstreamPolls != nil && rep.WindowSeconds > 0 {
		rep.UpstreamPolls = o.UpstreamPolls() - polls0
		rep.UpstreamRPS = float64(rep.UpstreamPolls) / rep.WindowSeconds
	}
	if o.LegacyInterval > 0 {
		rep.DirectPolls = float64(rep.Opened) * rep.WindowSeconds / o.LegacyInterval.Seconds()
		rep.DirectPollingRPS = float64(rep.Opened) / o.LegacyInterval.Seconds()
	}
	return rep, nil
}

func percentiles(ds []time.Duration) (p50, p99, maxMS float64) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return ms(ds[len(ds)/2]), ms(ds[min(len(ds)-1, len(ds)*99/100)]), ms(ds[len(ds)-1])
}

// ItemID is the id of the item change n adds.
func ItemID(n int) int { return 1_000_000 + n }

func (c *client) open(ctx context.Context, tr *http.Transport, url, host string, http1 bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+c.user)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return fmt.Errorf("status %s", resp.Status)
	}
	want := 2
	if http1 {
		want = 1
	}
	if resp.ProtoMajor != want {
		resp.Body.Close()
		return fmt.Errorf("got %s, want HTTP/%d", resp.Proto, want)
	}
	go c.read(resp.Body)
	return nil
}

// read records every item id that arrives in a created event, or in the
// data of an unnamed event (the floor server's).
func (c *client) read(body io.ReadCloser) {
	defer body.Close()
	r := sse.NewReader(body)
	first := true
	for {
		ev, err := r.Next()
		if err != nil {
			return
		}
		if first {
			first = false
			close(c.ready)
		}
		if ev.Type != "created" && ev.Type != "message" {
			continue
		}
		now := time.Now()
		var item struct {
			ID int `json:"id"`
		}
		if json.Unmarshal([]byte(ev.Data), &item) != nil {
			continue
		}
		c.mu.Lock()
		if _, dup := c.arrived[item.ID]; dup {
			c.dups++
		} else {
			c.arrived[item.ID] = now
		}
		c.mu.Unlock()
	}
}

func (c *client) waitFor(id int, deadline time.Time) (time.Time, bool) {
	for {
		c.mu.Lock()
		t, ok := c.arrived[id]
		c.mu.Unlock()
		if ok {
			return t, true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// scrape reads the gauges and counters of a Prometheus text page; nil when
// url is empty or unreachable.
func scrape(url string) map[string]float64 {
	if url == "" {
		return nil
	}
	resp, err := http.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		var f float64
		if _, err := fmt.Sscanf(val, "%g", &f); err == nil {
			out[name] = f
		}
	}
	return out
}

// Upstream is the legacy API the benchmark changes. It remembers when the
// gateway first fetched each change, so that fan-out (fetch to client) is
// told apart from the wait for the poll.
type Upstream struct {
	*legacyapi.API

	mu      sync.Mutex
	pending map[string]bool      // users changed but not fetched since
	fetched map[string]time.Time // when the last change of a user was fetched
}

// NewUpstream returns an API with users 0..users-1, each with one item.
func NewUpstream(users int) *Upstream {
	api := legacyapi.New()
	for i := range users {
		api.Add(UserName(i), fmt.Sprintf(`{"id":%d,"title":"welcome"}`, i))
	}
	return &Upstream{API: api, pending: map[string]bool{}, fetched: map[string]time.Time{}}
}

func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user := u.User(r)
	u.API.ServeHTTP(&fetchRecorder{ResponseWriter: w, on200: func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		if u.pending[user] {
			delete(u.pending, user)
			u.fetched[user] = time.Now()
		}
	}}, r)
}

// fetchRecorder calls on200 when a 200 status is written, explicitly or
// by the first Write.
type fetchRecorder struct {
	http.ResponseWriter
	on200       func()
	wroteHeader bool
}

func (f *fetchRecorder) WriteHeader(code int) {
	if !f.wroteHeader && code == http.StatusOK {
		f.on200()
	}
	f.wroteHeader = true
	f.ResponseWriter.WriteHeader(code)
}

func (f *fetchRecorder) Write(b []byte) (int, error) {
	if !f.wroteHeader {
		f.WriteHeader(http.StatusOK)
	}
	return f.ResponseWriter.Write(b)
}

// Change adds item ItemID(n) for each user and returns when it did.
func (u *Upstream) Change(_ context.Context, n int, users []string) (time.Time, error) {
	at := time.Now()
	for _, user := range users {
		u.mu.Lock()
		u.pending[user] = true
		u.mu.Unlock()
		u.Add(user, fmt.Sprintf(`{"id":%d,"title":"change %d"}`, ItemID(n), n))
	}
	return at, nil
}

// FetchedAt is when the gateway fetched user's latest change.
func (u *Upstream) FetchedAt(user string) (time.Time, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	t, ok := u.fetched[user]
	return t, ok
}

// Nudger returns a func that nudges the gateway at url for the given users.
func Nudger(url, token string) func(ctx context.Context, users []string) error {
	client := &http.Client{Timeout: 10 * time.Second, Transport: insecureTransport()}
	return func(ctx context.Context, users []string) error {
		for _, u := range users {
			if err := nudgeapi.Send(ctx, client, url, token, nudgeapi.Message{Path: legacyapi.Path, Identity: "Bearer " + u}); err != nil {
				return err
			}
		}
		return nil
	}
}

// insecureTransport trusts any certificate: the benchmark talks to a
// self-signed gateway on loopback.
func insecureTransport() *http.Transport {
	return &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
}
