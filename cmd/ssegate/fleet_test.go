package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssegate/ssegate/internal/legacyapi"
	"github.com/ssegate/ssegate/internal/sse"
)

// The fleet test runs three gateway processes on a Redis of its own (a
// redis-server child, so that stopping it harms no other test), in front of
// one upstream, with clients of several users on every replica.

// needRedisServer returns the redis-server binary, or skips the test when
// there is none, unless SSEGATE_REDIS_REQUIRE=1 (CI), where that fails.
func needRedisServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("SSEGATE_REDIS_REQUIRE") == "1" {
			t.Fatalf("no redis-server and SSEGATE_REDIS_REQUIRE=1: %v", err)
		}
		t.Skip("no redis-server on PATH")
	}
	return bin
}

// startRedis starts a redis-server without persistence on addr.
func startRedis(t *testing.T, bin, addr string) *exec.Cmd {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not come up on %s", addr)
		}
	}
}

// replica is one gateway process.
type replica struct {
	name, addr, metrics string
	cmd                 *exec.Cmd
	out                 interface{ String() string }
	client              *http.Client
}

func startReplica(t *testing.T, name string, env ...string) *replica {
	t.Helper()
	r := &replica{name: name, addr: freePort(t), metrics: freePort(t)}
	cmd, out := child(t, append(env, "SSEGATE_LISTEN_ADDR="+r.addr, "SSEGATE_METRICS_ADDR="+r.metrics)...)
	r.cmd, r.out = cmd, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("replica %s:\n%s", name, out)
		}
	})
	r.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + r.metrics + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s did not become ready:\n%s", name, out)
		}
	}
}

// metric returns the sum of a metric's samples on the replica.
func (r *replica) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			f := strings.Fields(rest)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// fclient is one EventSource-like client: it applies what it receives to
// its own copy of the user's items and flags an event it gets twice.
type fclient struct {
	t       *testing.T
	name    string
	user    string
	body    io.Closer
	events  <-chan sse.Event
	items   map[string]bool
	last    string   // last event id
	log     []string // "id kind data" of every change event
	snaps   int
	resumed bool // the stream began with a change event, not a snapshot
	started bool
}

func openClient(t *testing.T, r *replica, user, lastID string) *fclient {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://"+r.addr+legacyapi.Path, nil)
	// One name for every replica, as behind a balancer: the forwarded host
	// is part of the key, and replicas share the keys of one site.
	req.Host = "app.test"
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+user)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatalf("%s: open for %s: %v", r.name, user, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: open for %s: %s", r.name, user, resp.Status)
	}
	c := &fclient{t: t, name: r.name + "/" + user, user: user, body: resp.Body, events: sse.Follow(resp.Body, 1024), items: map[string]bool{}}
	t.Cleanup(func() { resp.Body.Close() })
	return c
}

// resumeFrom makes c continue another client's view (a reconnection).
func (c *fclient) resumeFrom(old *fclient) {
	for id := range old.items {
		c.items[id] = true
	}
	c.last = old.last
}

func itemID(data string) string {
	var it struct {
		ID json.Number `json:"id"`
	}
	_ = json.Unmarshal([]byte(data), &it)
	return it.ID.String()
}

func (c *fclient) apply(ev sse.Event) {
	if ev.ID != "" {
		c.last = ev.ID
	}
	first := !c.started
	c.started = true
	switch ev.Type {
	case "snapshot":
		c.snaps++
		var items []json.RawMessage
		if err := json.Unmarshal([]byte(ev.Data), &items); err != nil {
			c.t.Errorf("%s: snapshot %q: %v", c.name, ev.Data, err)
		}
		clear(c.items)
		for _, it := range items {
			c.items[itemID(string(it))] = true
		}
		c.log = append(c.log, ev.ID+" snapshot")
	case "created":
		if first {
			c.resumed = true
		}
		id := itemID(ev.Data)
		if c.items[id] {
			c.t.Errorf("%s: item %s created twice (event %s): a doubled event", c.name, id, ev.ID)
		}
		c.items[id] = true
		c.log = append(c.log, ev.ID+" created "+id)
	case "deleted":
		delete(c.items, itemID(ev.Data))
		c.log = append(c.log, ev.ID+" deleted "+itemID(ev.Data))
	}
}

// sync applies what comes until the client has the items want; it reports
// whether the stream ended first.
func (c *fclient) sync(want []string, timeout time.Duration) (ended bool) {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		if c.has(want) {
			return false
		}
		select {
		case ev, ok := <-c.events:
			if !ok {
				return true
			}
			c.apply(ev)
		case <-deadline:
			c.t.Errorf("%s: has items %v, want %v (events: %v)", c.name, c.sorted(), want, c.log)
			return false
		}
	}
}

// untilEnd applies what comes until the stream ends.
func (c *fclient) untilEnd(timeout time.Duration) {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				return
			}
			c.apply(ev)
		case <-deadline:
			c.t.Fatalf("%s: stream did not end after its replica was killed", c.name)
		}
	}
}

func (c *fclient) has(want []string) bool {
	if len(c.items) != len(want) {
		return false
	}
	for _, id := range want {
		if !c.items[id] {
			return false
		}
	}
	return true
}

func (c *fclient) sorted() []string {
	var ids []string
	for id := range c.items {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func upstreamIDs(api *legacyapi.API, user string) []string {
	var ids []string
	for _, it := range api.Items(user) {
		ids = append(ids, itemID(string(it)))
	}
	slices.Sort(ids)
	return ids
}

func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four processes")
	}
	bin := needRedisServer(t)
	redisAddr := freePort(t)
	rdb := startRedis(t, bin, redisAddr)

	api := legacyapi.New()
	users := []string{"ann", "bob", "cid", "dee"}
	next := 0
	add := func(user string) {
		next++
		api.Add(user, fmt.Sprintf(`{"id":%d,"text":"n%d"}`, next, next))
	}
	for _, u := range users {
		add(u)
	}
	up := httptest.NewServer(api)
	defer up.Close()

	const interval = 500 * time.Millisecond
	env := []string{
		"SSEGATE_UPSTREAM_URL=" + up.URL, "SSEGATE_CERT_DIR=" + t.TempDir(),
		"SSEGATE_REDIS_URL=redis://" + redisAddr + "/0", "SSEGATE_LEASE_TIME=1s",
		"SSEGATE_POLL_INTERVAL=" + interval.String(), "SSEGATE_POLL_INTERVAL_MAX=" + interval.String(),
		"SSEGATE_LEGACY_INTERVAL=0", "SSEGATE_LOG_LEVEL=debug",
	}
	reps := []*replica{startReplica(t, "A", env...), startReplica(t, "B", env...), startReplica(t, "C", env...)}

	// Every user has a client on every replica.
	clients := map[*replica][]*fclient{}
	for _, r := range reps {
		for _, u := range users {
			clients[r] = append(clients[r], openClient(t, r, u, ""))
		}
	}
	syncAll := func(timeout time.Duration) {
		t.Helper()
		for _, r := range reps {
			for _, c := range clients[r] {
				c.sync(upstreamIDs(api, c.user), timeout)
			}
		}
	}
	syncAll(10 * time.Second)

	// One poller per key for the fleet: count polls over a window.
	pollWindow := func(what string) {
		t.Helper()
		before := map[string]int{}
		for _, u := range users {
			before[u] = api.Polls(u)
		}
		const window = 4 * time.Second
		time.Sleep(window)
		perReplica := int(window / interval)
		for _, u := range users {
			n := api.Polls(u) - before[u]
			t.Logf("%s: %s polled %d times in %v (one poller: about %d; one per replica: about %d)", what, u, n, window, perReplica, 3*perReplica)
			if n > 2*perReplica || n == 0 {
				t.Errorf("%s: %s polled %d times in %v: want one poller's %d for the fleet, not one per replica", what, u, n, window, perReplica)
			}
		}
	}
	pollWindow("three replicas")

	// Changes reach every client, with the same ids on every replica.
	for range 3 {
		for _, u := range users {
			add(u)
		}
		time.Sleep(interval)
	}
	syncAll(10 * time.Second)
	for i, u := range users {
		a := clients[reps[0]][i].log
		for _, r := range reps[1:] {
			if b := clients[r][i].log; !slices.Equal(a[1:], b[1:]) {
				t.Errorf("%s's events differ between replicas:\n%s: %v\n%s: %v", u, reps[0].name, a, r.name, b)
			}
		}
	}

	// A client leaves A and comes back on B with its Last-Event-ID: exactly
	// what it missed, no snapshot.
	old := clients[reps[0]][0]
	old.body.Close()
	add(users[0])
	add(users[0])
	time.Sleep(2 * interval)
	back := openClient(t, reps[1], users[0], old.last)
	back.resumeFrom(old)
	back.sync(upstreamIDs(api, users[0]), 10*time.Second)
	if back.snaps != 0 || !back.resumed {
		t.Errorf("resume on another replica from %s: %d snapshots, events %v; want only the missed events", old.last, back.snaps, back.log)
	}
	clients[reps[0]] = clients[reps[0]][1:]
	clients[reps[1]] = append(clients[reps[1]], back)

	// SIGKILL the replica holding the most leases: the others take its
	// keys over within the lease time, their clients miss nothing, and its
	// clients resume exactly on the others.
	victim := reps[0]
	for _, r := range reps {
		if r.metric(t, "ssegate_leases_held") > victim.metric(t, "ssegate_leases_held") {
			victim = r
		}
	}
	t.Logf("killing %s, which holds %v leases", victim.name, victim.metric(t, "ssegate_leases_held"))
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	time.Sleep(100 * time.Millisecond) // a poll of the victim's in flight lands
	before := map[string]int{}
	for _, u := range users {
		before[u] = api.Polls(u)
	}
	for _, u := range users { // how long each key goes unpolled: logged, not asserted
		for api.Polls(u) == before[u] && time.Since(killed) < 30*time.Second {
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%s polled again %v after the holder's SIGKILL (SSEGATE_LEASE_TIME=1s, interval %v)", u, time.Since(killed).Round(time.Millisecond), interval)
	}
	var live []*replica
	for _, r := range reps {
		if r != victim {
			live = append(live, r)
		}
	}
	for _, u := range users {
		add(u)
	}
	for i, c := range clients[victim] {
		c.untilEnd(10 * time.Second)
		to := live[i%len(live)]
		nc := openClient(t, to, c.user, c.last)
		nc.resumeFrom(c)
		nc.name = c.name + "→" + to.name
		clients[to] = append(clients[to], nc)
	}
	delete(clients, victim)
	reps = live
	syncAll(15 * time.Second)
	for _, r := range reps {
		for _, c := range clients[r] {
			if strings.Contains(c.name, "→") && (c.snaps != 0 || !c.resumed) {
				t.Errorf("%s: resumed after the kill with %d snapshots: %v", c.name, c.snaps, c.log)
			}
		}
	}

	// Redis stops: streams stay open and keep receiving changes from each
	// replica's own polls; when it is back, polls are shared again.
	if err := rdb.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = rdb.Wait()
	waitMetric := func(name string, want float64) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			ok := true
			for _, r := range reps {
				ok = ok && r.metric(t, name) == want
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not become %v on every replica", name, want)
			}
		}
	}
	waitMetric("ssegate_cluster_connected", 0)
	for range 2 {
		for _, u := range users {
			add(u)
		}
		time.Sleep(interval)
	}
	syncAll(15 * time.Second)

	startRedis(t, bin, redisAddr)
	waitMetric("ssegate_cluster_connected", 1)
	for _, u := range users {
		add(u)
	}
	syncAll(15 * time.Second)
	pollWindow("after Redis came back")
	for _, u := range users {
		add(u)
	}
	syncAll(15 * time.Second)
	for _, r := range reps {
		for _, c := range clients[r] {
			t.Logf("%s: %d snapshots, %d events", c.name, c.snaps, len(c.log))
		}
	}
}

// A replica started while Redis is down joins the fleet once Redis is up:
// its clients' keys are the others' (the same ids), not its own for as long
// as it runs.
func TestFleetReplicaStartedWithoutRedisJoins(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes")
	}
	bin := needRedisServer(t)
	redisAddr := freePort(t)
	api := legacyapi.New()
	api.Add("ann", `{"id":1,"text":"n1"}`)
	up := httptest.NewServer(api)
	defer up.Close()
	env := []string{
		"SSEGATE_UPSTREAM_URL=" + up.URL, "SSEGATE_CERT_DIR=" + t.TempDir(),
		"SSEGATE_REDIS_URL=redis://" + redisAddr + "/0", "SSEGATE_LEASE_TIME=1s",
		"SSEGATE_POLL_INTERVAL=300ms", "SSEGATE_POLL_INTERVAL_MAX=300ms", "SSEGATE_LEGACY_INTERVAL=0",
	}
	early := startReplica(t, "early", env...) // Redis is not there yet
	startRedis(t, bin, redisAddr)
	late := startReplica(t, "late", env...)
	for deadline := time.Now().Add(15 * time.Second); early.metric(t, "ssegate_cluster_connected") != 1; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the early replica did not connect to Redis")
		}
	}
	epochOf := func(r *replica) string {
		t.Helper()
		c := openClient(t, r, "ann", "")
		defer c.body.Close()
		c.sync([]string{"1"}, 10*time.Second)
		ep, _, _ := strings.Cut(c.last, "-")
		return ep
	}
	// Keys opened once Redis answered are the fleet's, on either replica.
	var a, b string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if a, b = epochOf(late), epochOf(early); a == b {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica started without Redis names ann's key apart from the fleet: epochs %s and %s", a, b)
		}
	}
}
