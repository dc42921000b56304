package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ssegate/ssegate/stream"
)

var bg = context.Background()

func TestOpenRejectsBadURLWithoutEchoingIt(t *testing.T) {
	for _, u := range []string{
		"http://user:s3cret@127.0.0.1:6379",
		"redis://user:s3cret@127.0.0.1:6379/notadb",
		"redis://user:s3cret@[::1",
		":s3cret",
	} {
		_, err := Open(bg, u, Options{HistorySize: 10})
		if err == nil {
			t.Errorf("Open(%q) = nil error", u)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open error carries the password: %v", err)
		}
	}
	if _, err := Open(bg, redisURL, Options{}); err == nil {
		t.Error("Open without HistorySize = nil error")
	}
}

func TestKeyNamesUseHashTags(t *testing.T) {
	n := names{prefix: "p:"}
	k := "0123abcd"
	for _, name := range []string{n.state(k), n.events(k), n.lease(k), n.notify(k)} {
		if !strings.HasPrefix(name, "p:{"+k+"}:") {
			t.Errorf("%q does not start with the key's hash tag", name)
		}
	}
	for _, bad := range []string{"", "a}b", "a{b", "a:b", "a b", strings.Repeat("a", 129)} {
		if checkKey(bad) == nil {
			t.Errorf("checkKey(%q) = nil", bad)
		}
	}
}

func TestLeaseIsExclusive(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(), v.open()
	const key = "k1"
	if held, _, _, err := a.tryAcquire(bg, key, 0); err != nil || !held {
		t.Fatalf("A tryAcquire = %v, %v; want held", held, err)
	}
	held, wait, _, err := b.tryAcquire(bg, key, 0)
	if err != nil || held {
		t.Fatalf("B tryAcquire = %v, %v; want not held", held, err)
	}
	if wait <= 0 || wait > a.opts.LeaseTime {
		t.Errorf("B's wait = %v, want in (0, %v]", wait, a.opts.LeaseTime)
	}
	if ok, _, err := b.renew(bg, key, 0); err != nil || ok {
		t.Errorf("B renew of A's lease = %v, %v; want false", ok, err)
	}
	if err := b.release(bg, key); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := a.renew(bg, key, 0); err != nil || !ok {
		t.Fatalf("A renew after B's release = %v, %v; want still held", ok, err)
	}
	if got := testutil.ToFloat64(a.metrics.leasesHeld); got != 1 {
		t.Errorf("A ssegate_leases_held = %v, want 1", got)
	}
	if err := a.release(bg, key); err != nil {
		t.Fatal(err)
	}
	if held, _, _, err := b.tryAcquire(bg, key, 0); err != nil || !held {
		t.Fatalf("B tryAcquire after A's release = %v, %v; want held", held, err)
	}
	if got := testutil.ToFloat64(a.metrics.leasesHeld); got != 0 {
		t.Errorf("A ssegate_leases_held = %v after release, want 0", got)
	}
}

func TestLeaseTakeoverCountsAnotherWriter(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(), v.open()
	const key = "k1"
	if _, err := a.append(bg, key, position{}, write{Body: []byte("b1")}); err != nil {
		t.Fatal(err)
	}
	if held, _, _, _ := b.tryAcquire(bg, key, 0); !held {
		t.Fatal("B did not get the free lease")
	}
	if got := testutil.ToFloat64(b.metrics.takeovers); got != 1 {
		t.Errorf("ssegate_lease_takeovers_total = %v, want 1 (A wrote last)", got)
	}
	if held, _, _, _ := a.tryAcquire(bg, "k2", 0); !held {
		t.Fatal("A did not get a fresh key's lease")
	}
	if got := testutil.ToFloat64(a.metrics.takeovers); got != 0 {
		t.Errorf("takeovers = %v for a fresh key, want 0", got)
	}
}

// A holder that stops renewing (here: its connections to Redis go silent,
// as in a pause or a partition) steps down once its lease would have run
// out, and another replica takes over within the lease time of the last
// renewal; never both hold it at once by their own account.
func TestLeaseTakeoverAfterHolderGoesSilent(t *testing.T) {
	v := newEnv(t)
	var h holes
	a := v.open(func(o *Options) { o.dial = h.dial })
	b := v.open()
	const key = "k1"
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	la, lb := a.newLease(key), b.newLease(key)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); la.Run(ctx) }()
	eventually(t, 2*time.Second, "A holds the lease", func() bool { held, _ := la.held.get(); return held })
	go func() { defer wg.Done(); lb.Run(ctx) }()

	// Both run for several lease times: B never gets it while A renews.
	stop := time.Now().Add(3 * a.opts.LeaseTime)
	for time.Now().Before(stop) {
		if held, _ := lb.held.get(); held {
			t.Fatal("B holds the lease while A renews it")
		}
		time.Sleep(5 * time.Millisecond)
	}

	cutAt := time.Now()
	h.cut(true) // a partition: A reaches Redis no more
	// Check exclusivity by each replica's own account, until B takes over.
	for {
		ha, _ := la.held.get()
		hb, _ := lb.held.get()
		if ha && hb {
			t.Fatal("A and B both hold the lease")
		}
		if hb {
			break
		}
		if time.Since(cutAt) > 5*a.opts.LeaseTime+2*time.Second {
			t.Fatal("B did not take over")
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(cutAt)
	t.Logf("takeover %v after the holder went silent (lease %v)", took, a.opts.LeaseTime)
	if took > 2*a.opts.LeaseTime+time.Second { // generous: Redis time is real
		t.Errorf("takeover took %v, want about the lease time %v", took, a.opts.LeaseTime)
	}
	cancel()
	wg.Wait()
}

func TestConcurrentAppendsNeverCorruptTheSequence(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(), v.open()
	const key = "k1"
	// First body: exactly one of two writers seeds the epoch.
	var wg sync.WaitGroup
	var pa, pb position
	var ea, eb error
	wg.Add(2)
	go func() { defer wg.Done(); pa, ea = a.append(bg, key, position{}, write{Body: []byte("A")}) }()
	go func() { defer wg.Done(); pb, eb = b.append(bg, key, position{}, write{Body: []byte("B")}) }()
	wg.Wait()
	if (ea == nil) == (eb == nil) {
		t.Fatalf("first appends: errors %v and %v, want exactly one conflict", ea, eb)
	}
	if !errors.Is(ea, errConflict) && !errors.Is(eb, errConflict) {
		t.Fatalf("the loser's error is not errConflict: %v, %v", ea, eb)
	}
	if pa != pb {
		t.Fatalf("the loser was not told the winner's position: %+v vs %+v", pa, pb)
	}

	// Then rounds in which both append from the same position.
	pos := pa
	want := []string{}
	for round := range 30 {
		var wins [2]position
		var errs [2]error
		for i, e := range []*Engine{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := write{Body: fmt.Appendf(nil, "r%d-%d", round, i), Changes: []stream.Change{
					{Kind: stream.KindUpdated, Data: fmt.Appendf(nil, "r%d-%d-x", round, i)},
					{Kind: stream.KindCreated, Data: fmt.Appendf(nil, "r%d-%d-y", round, i)},
				}}
				wins[i], errs[i] = e.append(bg, key, pos, w)
			}()
		}
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if won >= 0 {
					t.Fatalf("round %d: both appends succeeded", round)
				}
				won = i
			case !errors.Is(err, errConflict):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: both appends conflicted", round)
		}
		if wins[0] != wins[1] {
			t.Fatalf("round %d: loser's position %+v is not the winner's %+v", round, wins[1-won], wins[won])
		}
		pos = wins[won]
		want = append(want, fmt.Sprintf("r%d-%d-x", round, won), fmt.Sprintf("r%d-%d-y", round, won))
	}
	st, evs, ok, err := a.load(bg, key)
	if err != nil || !ok {
		t.Fatalf("load: %v %v", ok, err)
	}
	if st.Last != stream.ID(1+len(want)) || st.position != pos {
		t.Fatalf("state at %+v, want %+v", st.position, pos)
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d", len(evs), len(want))
	}
	for i, ev := range evs {
		if ev.ID != stream.ID(i+2) || string(ev.Data) != want[i] {
			t.Fatalf("event %d = %d %q, want %d %q", i, ev.ID, ev.Data, i+2, want[i])
		}
	}
}

func appendN(t *testing.T, e *Engine, key string, pos position, n int, tag string) position {
	t.Helper()
	for i := range n {
		var err error
		pos, err = e.append(bg, key, pos, write{Body: fmt.Appendf(nil, "%s-body-%d", tag, i), ETag: fmt.Sprintf(`"%s%d"`, tag, i),
			Changes: []stream.Change{{Kind: stream.KindPatch, Data: fmt.Appendf(nil, "%s-%d", tag, i)}}})
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	return pos
}

func TestSinceReturnsExactlyTheMissedEventsAcrossEngines(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(func(o *Options) { o.HistorySize = 5 }), v.open(func(o *Options) { o.HistorySize = 5 })
	const key = "k1"
	p1, err := a.append(bg, key, position{}, write{Body: []byte("first"), ETag: `"e1"`, LastModified: "Mon, 01 Jan 2024 00:00:00 GMT"})
	if err != nil {
		t.Fatal(err)
	}
	p4 := appendN(t, a, key, p1, 3, "a") // ids 2, 3, 4

	// A client that saw id 2 on A resumes on B with its wire id.
	client, ok := p1.Epoch.Parse(p1.Epoch.Format(2))
	if !ok {
		t.Fatal("wire id does not parse")
	}
	r, err := b.since(bg, key, position{Epoch: p1.Epoch, Last: client}, 100, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Events) != 2 || r.Events[0].ID != 3 || r.Events[1].ID != 4 || string(r.Events[1].Data) != "a-2" || r.Events[1].Kind != stream.KindPatch {
		t.Fatalf("since(2) = %+v, want events 3 and 4", r.Events)
	}
	if r.Last != p4 || r.Next != p4 || string(r.Body) != "a-body-2" {
		t.Fatalf("since(2): last %+v next %+v body %q; want %+v and the newest body", r.Last, r.Next, r.Body, p4)
	}
	// A limit splits the read; the body comes only with the newest event.
	r, err = b.since(bg, key, position{Epoch: p1.Epoch, Last: 1}, 2, true)
	if err != nil || len(r.Events) != 2 || r.Next.Last != 3 || r.Body != nil {
		t.Fatalf("since(1, limit 2) = %+v, %v; want 2, 3 and no body", r, err)
	}
	if r, err = b.since(bg, key, r.Next, 2, false); err != nil || len(r.Events) != 1 || r.Events[0].ID != 4 || r.Body != nil {
		t.Fatalf("since(3) = %+v, %v; want event 4", r, err)
	}
	// Up to date: nothing.
	if r, err = b.since(bg, key, p4, 10, false); err != nil || len(r.Events) != 0 {
		t.Fatalf("since(last) = %+v, %v; want nothing", r, err)
	}
	// Another epoch, or a future id: unknown, a snapshot is needed.
	for _, p := range []position{{Epoch: "other", Last: 2}, {Epoch: p1.Epoch, Last: 0}} {
		if _, err := b.since(bg, key, p, 10, false); !errors.Is(err, errUnknown) {
			t.Errorf("since(%+v) = %v, want errUnknown", p, err)
		}
	}
	// Trimmed: 5 events kept, so after id 6 more, id 2 is gone.
	appendN(t, a, key, p4, 6, "b")
	if _, err := b.since(bg, key, position{Epoch: p1.Epoch, Last: 2}, 10, false); !errors.Is(err, errUnknown) {
		t.Errorf("since(trimmed) = %v, want errUnknown", err)
	}
	if r, err := b.since(bg, key, position{Epoch: p1.Epoch, Last: 5}, 10, false); err != nil || len(r.Events) != 5 {
		t.Errorf("since(floor 5) = %d events, %v; want 5", len(r.Events), err)
	}
	st, ok, err := b.state(bg, key)
	if err != nil || !ok || st.Last != 10 || st.ETag != `"b5"` || string(st.Body) != "b-body-5" || st.LastModified != "" {
		t.Fatalf("state = %+v %v %v", st, ok, err)
	}
	if n, _ := v.raw.XLen(bg, b.names.events(key)).Result(); n != 5 {
		t.Errorf("XLEN = %d, want the history size 5", n)
	}
}

func TestHistoryBoundedByBytes(t *testing.T) {
	v := newEnv(t)
	a := v.open(func(o *Options) { o.HistoryBytes = 4 * (100 + entryOverhead) })
	const key = "k1"
	pos, err := a.append(bg, key, position{}, write{Body: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(strings.Repeat("d", 100))
	for range 10 {
		if pos, err = a.append(bg, key, pos, write{Body: []byte("x"), Changes: []stream.Change{{Kind: stream.KindUpdated, Data: data}}}); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := v.raw.XLen(bg, a.names.events(key)).Result(); n != 4 {
		t.Errorf("XLEN = %d, want 4 by the byte bound", n)
	}
	if n, _ := v.raw.HGet(bg, a.names.state(key), "n").Int(); n != 4*(100+entryOverhead) {
		t.Errorf("accounted bytes = %d, want %d", n, 4*(100+entryOverhead))
	}
	// One event over the bound is not kept at all.
	big := []byte(strings.Repeat("B", 1000))
	if pos, err = a.append(bg, key, pos, write{Body: []byte("x"), Changes: []stream.Change{{Kind: stream.KindUpdated, Data: big}}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := v.raw.XLen(bg, a.names.events(key)).Result(); n != 0 {
		t.Errorf("XLEN = %d after an oversized event, want 0", n)
	}
	if r, err := a.since(bg, key, pos, 10, false); err != nil || len(r.Events) != 0 {
		t.Errorf("since(newest) = %+v %v: the newest position must stay known", r, err)
	}
}

// collector records a follower's updates and checks that they chain: each
// event once, in order, no gap.
type collector struct {
	mu      sync.Mutex
	t       *testing.T
	epoch   stream.Epoch
	last    stream.ID
	resets  int
	events  []entry
	bodies  map[stream.ID]string
	updates int
}

func newCollector(t *testing.T) *collector {
	return &collector{t: t, bodies: map[stream.ID]string{}}
}

func (c *collector) fn(u update) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.updates++
	if u.Reset {
		c.resets++
		c.epoch, c.last = u.Epoch, u.Last
		c.events = append([]entry(nil), u.Events...)
	} else {
		if u.Epoch != c.epoch {
			c.t.Errorf("update of epoch %s without a reset from %s", u.Epoch, c.epoch)
		}
		for _, ev := range u.Events {
			if ev.ID != c.last+1 {
				c.t.Errorf("event %d after %d: a gap or a repeat", ev.ID, c.last)
			}
			c.last = ev.ID
			c.events = append(c.events, ev)
		}
		if u.Last != c.last {
			c.t.Errorf("update's Last %d, events end at %d", u.Last, c.last)
		}
	}
	if u.Body != nil {
		c.bodies[u.Last] = string(u.Body)
	}
}

func (c *collector) at() (stream.Epoch, stream.ID, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch, c.last, c.resets
}

func (c *collector) data() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.events))
	for i, ev := range c.events {
		out[i] = string(ev.Data)
	}
	return out
}

func TestFollowersGetEachEventOnceInOrder(t *testing.T) {
	v := newEnv(t)
	a, b, c := v.open(), v.open(), v.open()
	const key = "k1"
	var cols []*collector
	var fs []*follower
	for _, e := range []*Engine{a, b, c} {
		col := newCollector(t)
		f, err := e.follow(key, col.fn)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Stop()
		cols, fs = append(cols, col), append(fs, f)
	}
	if _, err := a.follow(key, func(update) {}); err == nil {
		t.Error("a second follower of one key on one engine was accepted")
	}
	pos, err := a.append(bg, key, position{}, write{Body: []byte("first")})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 40 {
		w := write{Body: fmt.Appendf(nil, "body%d", i)}
		for j := range 1 + i%3 {
			d := fmt.Sprintf("e%d.%d", i, j)
			w.Changes = append(w.Changes, stream.Change{Kind: stream.KindUpdated, Data: []byte(d)})
			want = append(want, d)
		}
		if pos, err = a.append(bg, key, pos, w); err != nil {
			t.Fatal(err)
		}
	}
	for i, col := range cols {
		eventually(t, 5*time.Second, fmt.Sprintf("follower %d catches up", i), func() bool {
			ep, last, _ := col.at()
			return ep == pos.Epoch && last == pos.Last
		})
		if got := col.data(); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("follower %d got %v, want %v", i, got, want)
		}
		if _, _, resets := col.at(); resets != 1 {
			t.Errorf("follower %d had %d resets, want 1 (the first body)", i, resets)
		}
	}
	// The writer's own follower got its appends without a read, bodies too.
	cols[0].mu.Lock()
	if cols[0].bodies[pos.Last] != "body39" {
		t.Errorf("writer's follower has body %q at the end", cols[0].bodies[pos.Last])
	}
	cols[0].mu.Unlock()
	if got := testutil.ToFloat64(b.metrics.eventsRead); got < float64(len(want)) {
		t.Errorf("B ssegate_redis_events_read_total = %v, want at least %d", got, len(want))
	}
	// A read brings another replica the newest body too, for the
	// snapshots of its clients that join.
	eventually(t, 2*time.Second, "B gets the newest body", func() bool {
		cols[1].mu.Lock()
		defer cols[1].mu.Unlock()
		return cols[1].bodies[pos.Last] == "body39"
	})
}

func TestLostNotificationIsCaughtUp(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(), v.open()
	const key = "k1"
	col := newCollector(t)
	f, err := b.follow(key, col.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	pos, err := a.append(bg, key, position{}, write{Body: []byte("first")})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "first body", func() bool { _, last, _ := col.at(); return last == 1 })
	a.muteNotify = true // these appends' notifications are lost
	pos = appendN(t, a, key, pos, 3, "lost")
	time.Sleep(300 * time.Millisecond)
	if _, last, _ := col.at(); last != 1 {
		t.Fatalf("B got events without a notification (at %d): the test cannot lose one", last)
	}
	a.muteNotify = false
	pos = appendN(t, a, key, pos, 1, "next")
	eventually(t, 2*time.Second, "B catches up at the next notification", func() bool { _, last, _ := col.at(); return last == pos.Last })
	if got := strings.Join(col.data(), ","); got != "lost-0,lost-1,lost-2,next-0" {
		t.Errorf("B got %s", got)
	}
}

func TestStateLostStartsANewEpoch(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(), v.open()
	const key = "k1"
	col := newCollector(t)
	f, err := b.follow(key, col.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	p1, err := a.append(bg, key, position{}, write{Body: []byte("first")})
	if err != nil {
		t.Fatal(err)
	}
	pos := appendN(t, a, key, p1, 3, "old")
	eventually(t, 2*time.Second, "B follows", func() bool { _, last, _ := col.at(); return last == pos.Last })

	v.flush() // Redis lost everything (FLUSHALL, failover to an empty replica)

	if _, err := a.since(bg, key, pos, 10, false); !errors.Is(err, errUnknown) {
		t.Errorf("since after the loss = %v, want errUnknown", err)
	}
	cur, err := a.append(bg, key, pos, write{Body: []byte("x"), Changes: []stream.Change{{Kind: stream.KindUpdated, Data: []byte("x")}}})
	if !errors.Is(err, errConflict) || cur != (position{}) {
		t.Fatalf("append after the loss = %+v, %v; want a conflict and no state", cur, err)
	}
	p2, err := a.append(bg, key, position{}, write{Body: []byte("again")})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Epoch == p1.Epoch || p2.Last != 1 {
		t.Fatalf("after the loss: %+v, want a new epoch at 1 (was %s)", p2, p1.Epoch)
	}
	pos = appendN(t, a, key, p2, 2, "new")
	eventually(t, 2*time.Second, "B resets to the new epoch", func() bool { ep, last, _ := col.at(); return ep == p2.Epoch && last == pos.Last })
	if _, _, resets := col.at(); resets != 2 {
		t.Errorf("B had %d resets, want 2", resets)
	}
	if got := strings.Join(col.data(), ","); got != "new-0,new-1" {
		t.Errorf("B's history after the reset: %s", got)
	}
}

// A failover that loses the newest appends, after which a writer reuses
// their ids in the same epoch: a follower that had the lost events must
// not take the new ones for their continuation.
func TestForkedHistoryStartsANewEpoch(t *testing.T) {
	v := newEnv(t)
	a, b, c := v.open(), v.open(), v.open()
	const key = "k1"
	col := newCollector(t)
	f, err := b.follow(key, col.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	p1, err := a.append(bg, key, position{}, write{Body: []byte("first")})
	if err != nil {
		t.Fatal(err)
	}
	p2 := appendN(t, a, key, p1, 1, "kept")
	p3 := appendN(t, a, key, p2, 1, "lost")
	eventually(t, 2*time.Second, "B follows", func() bool { _, last, _ := col.at(); return last == p3.Last })

	// The failover: Redis is back at p2.
	st := a.names.state(key)
	if err := v.raw.HSet(bg, st, "s", "2", "h", p2.tag).Err(); err != nil {
		t.Fatal(err)
	}
	if err := v.raw.XDel(bg, a.names.events(key), "3-0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := v.raw.Do(bg, "XSETID", a.names.events(key), "2-0").Err(); err != nil {
		t.Fatal(err)
	}
	// C, the new holder, carries on from what it reads; so does A, whose
	// append notices the fork itself.
	cs, _, _ := c.state(bg, key)
	if cs.position != p2 {
		t.Fatalf("C reads %+v, want %+v", cs.position, p2)
	}
	// Two appends, B notified of the second only: B reads after its id 3,
	// which the forked history has too, with another tag.
	c.muteNotify = true
	c3, err := c.append(bg, key, cs.position, write{Body: []byte("x"), Changes: []stream.Change{{Kind: stream.KindUpdated, Data: []byte("forked")}}})
	if err != nil {
		t.Fatal(err)
	}
	c.muteNotify = false
	if _, err := c.append(bg, key, c3, write{Body: []byte("x"), Changes: []stream.Change{{Kind: stream.KindUpdated, Data: []byte("forked2")}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "B's read deletes the forked state", func() bool {
		n, _ := v.raw.Exists(bg, st).Result()
		return n == 0
	})
	for _, ev := range col.data() {
		if strings.HasPrefix(ev, "forked") {
			t.Fatal("B delivered an event of the forked history as a continuation")
		}
	}
	if _, err := c.append(bg, key, position{}, write{Body: []byte("fresh")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "B resets to a new epoch", func() bool { ep, _, resets := col.at(); return resets == 2 && ep != p1.Epoch })

	// A position at the newest id with another tag is a fork too.
	now, _, _ := b.state(bg, key)
	forged := now.position
	forged.tag = "other"
	if _, err := b.since(bg, key, forged, 10, false); !errors.Is(err, errUnknown) {
		t.Errorf("since at the newest id with another tag = %v, want errUnknown", err)
	}
	if n, _ := v.raw.Exists(bg, st).Result(); n != 0 {
		t.Error("the state survived a fork at the newest id")
	}

	// The writer's own check: A still thinks it is at p3.
	v.flush()
	q1, _ := a.append(bg, key, position{}, write{Body: []byte("first")})
	q2 := appendN(t, a, key, q1, 1, "kept")
	appendN(t, a, key, q2, 1, "lost") // an event beyond the state restored below
	if err := v.raw.HSet(bg, st, "s", "2", "h", q2.tag).Err(); err != nil {
		t.Fatal(err)
	}
	// C, which read the state at q2, finds events beyond it (the state
	// was restored older than the events): it trusts neither.
	if cur, err := c.append(bg, key, q2, write{Body: []byte("y"), Changes: []stream.Change{{Kind: stream.KindUpdated, Data: []byte("z")}}}); !errors.Is(err, errConflict) || cur != (position{}) {
		t.Fatalf("C's append below the events = %+v, %v; want a conflict and the state gone", cur, err)
	}
	v.flush()
	q1, _ = a.append(bg, key, position{}, write{Body: []byte("first")})
	q2 = appendN(t, a, key, q1, 1, "kept")
	q3 := appendN(t, a, key, q2, 1, "lost")
	if err := v.raw.HSet(bg, st, "s", "2", "h", q2.tag).Err(); err != nil {
		t.Fatal(err)
	}
	if cur, err := a.append(bg, key, q3, write{Body: []byte("y")}); !errors.Is(err, errConflict) || cur != (position{}) {
		t.Fatalf("A's append after the fork = %+v, %v; want a conflict and the state gone", cur, err)
	}
}

func TestNudgeReachesOtherReplicas(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(), v.open()
	if err := a.PublishNudge(bg, []byte(`{"path":"/api/"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-b.Nudges():
		if string(got) != `{"path":"/api/"}` {
			t.Errorf("B got %q", got)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("B got no nudge")
	}
	select {
	case got := <-a.Nudges():
		t.Errorf("A got its own nudge back: %q", got)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestLiveReplicas(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(), v.open()
	c := v.open()
	for _, e := range []*Engine{a, b, c} {
		eventually(t, 2*time.Second, "three replicas", func() bool { n, _ := e.LiveReplicas(); return n == 3 })
	}
	if got := a.Share(30); got != 10 {
		t.Errorf("Share(30) = %v with 3 replicas, want 10", got)
	}
	_, changed := b.LiveReplicas()
	c.Close()
	eventually(t, 2*time.Second, "two replicas after one left", func() bool { n, _ := b.LiveReplicas(); return n == 2 })
	select {
	case <-changed:
	default:
		t.Error("the change channel was not closed")
	}
}

// A holder's own append is handed to its follower directly only when the
// follower is at the append's previous position: after another writer's
// unannounced append it must read, not skip.
func TestOwnAppendAfterAnotherWritersIsRead(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(), v.open()
	const key = "k1"
	col := newCollector(t)
	f, err := a.follow(key, col.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	pos, err := a.append(bg, key, position{}, write{Body: []byte("first")})
	if err != nil {
		t.Fatal(err)
	}
	pos = appendN(t, a, key, pos, 1, "a")
	eventually(t, 2*time.Second, "A follows", func() bool { _, last, _ := col.at(); return last == pos.Last })
	b.muteNotify = true
	pos = appendN(t, b, key, pos, 2, "b") // the lease moved to B for a while
	pos = appendN(t, a, key, pos, 1, "a2")
	eventually(t, 2*time.Second, "A's follower has everything", func() bool { _, last, _ := col.at(); return last == pos.Last })
	if got := strings.Join(col.data(), ","); got != "a-0,b-0,b-1,a2-0" {
		t.Errorf("A's follower got %s", got)
	}
}

// The budget is shared by the leases each replica holds, plus one each:
// a replica polling most keys gets most of it.
func TestShareFollowsLeases(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(), v.open()
	c := v.open()
	for _, k := range []string{"k1", "k2"} {
		if held, _, _, err := a.tryAcquire(context.Background(), k, 0); err != nil || !held {
			t.Fatalf("acquire %s: %v, %v", k, held, err)
		}
	}
	// a: (2+1) of (2 leases + 3 replicas); b and c: 1 of 5 each.
	eventually(t, 3*time.Second, "shares by leases", func() bool {
		return a.Share(30) == 18 && b.Share(30) == 6 && c.Share(30) == 6
	})
}

// Every replica's lease loop reports its clients of the key, holder or
// not, and reads the fleet's sum: the holder polls for the pages of all.
func TestLeasesCountTheFleetsSubscribers(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(), v.open()
	la, lb := a.newLease("k1"), b.newLease("k1")
	la.subs = func() int { return 2 }
	lb.subs = func() int { return 3 }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctxB, cancelB := context.WithCancel(ctx)
	doneB := make(chan struct{})
	go la.Run(ctx)
	go func() { lb.Run(ctxB); close(doneB) }()
	eventually(t, 3*time.Second, "both count 5", func() bool {
		return la.fleetSubscribers() == 5 && lb.fleetSubscribers() == 5
	})
	// A replica that stops reporting drops out within the lease time.
	cancelB()
	<-doneB
	eventually(t, 3*time.Second, "A counts its own 2", func() bool { return la.fleetSubscribers() == 2 })
}

// Without Redis the shares are even again: every replica polls its own
// clients' keys, whoever held their leases.
func TestShareWhileDisconnectedIsEven(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(), v.open()
	if held, _, _, err := a.tryAcquire(context.Background(), "k1", 0); err != nil || !held {
		t.Fatalf("acquire: %v, %v", held, err)
	}
	eventually(t, 3*time.Second, "weighed shares", func() bool { return a.Share(30) == 20 && b.Share(30) == 10 })
	a.setConnected(false, errors.New("test: Redis away"))
	if got := a.Share(30); got != 15 {
		t.Errorf("Share(30) while disconnected = %v, want an even 15", got)
	}
}
