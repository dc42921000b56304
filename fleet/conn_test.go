package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestUnreachableRedisFailsFast(t *testing.T) {
	needRedis(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a closed port: connections are refused
	v := &env{t: t, prefix: "ssegate-test-" + randomHex(6) + ":"}
	start := time.Now()
	e := v.openURL("redis://" + addr)
	if e.Connected() {
		t.Fatal("Connected to a closed port")
	}
	if got := testutil.ToFloat64(e.metrics.connected); got != 0 {
		t.Errorf("ssegate_cluster_connected = %v", got)
	}
	for _, call := range []func() error{
		func() error { _, _, _, err := e.tryAcquire(bg, "k", 0); return err },
		func() error { _, err := e.append(bg, "k", position{}, write{Body: []byte("x")}); return err },
		func() error { _, _, err := e.state(bg, "k"); return err },
		func() error { return e.PublishNudge(bg, nil) },
	} {
		if err := call(); !errors.Is(err, ErrDisconnected) {
			t.Errorf("call while disconnected = %v, want ErrDisconnected", err)
		}
	}
	if d := time.Since(start); d > 2*time.Second { // generous: should be milliseconds
		t.Errorf("Open and four calls took %v against a closed port", d)
	}
}

// Redis goes away and comes back: Connected follows, watchers hear of it,
// and a follower reads what was appended while it was cut off.
func TestReconnectReportsAndResyncs(t *testing.T) {
	v := newEnv(t)
	p := newProxy(t)
	a := v.open()
	b := v.openURL(fmt.Sprintf("redis://%s/%d", p.addr, redisDB))
	if !b.Connected() {
		t.Fatal("B not connected through the proxy")
	}
	const key = "k1"
	col, pos := following(t, a, b, key)

	_, down := b.WatchConnected()
	stopped := time.Now()
	p.stop()
	select {
	case <-down:
	case <-time.After(3 * time.Second):
		t.Fatal("Connected did not change within 3s of Redis going away")
	}
	t.Logf("disconnect noticed after %v", time.Since(stopped))
	if b.Connected() {
		t.Fatal("still Connected")
	}
	if _, _, _, err := b.tryAcquire(bg, key, 0); !errors.Is(err, ErrDisconnected) {
		t.Errorf("tryAcquire while down = %v, want ErrDisconnected", err)
	}
	pos = appendN(t, a, key, pos, 3, "meanwhile")

	_, up := b.WatchConnected()
	p.start()
	select {
	case <-up:
	case <-time.After(5 * time.Second):
		t.Fatal("Connected did not come back within 5s of Redis")
	}
	if !b.Connected() {
		t.Fatal("not Connected after the change")
	}
	eventually(t, 3*time.Second, "B reads what it missed", func() bool { _, last, _ := col.at(); return last == pos.Last })
	if got := strings.Join(col.data(), ","); got != "meanwhile-0,meanwhile-1,meanwhile-2" {
		t.Errorf("B got %s", got)
	}
	if got := testutil.ToFloat64(b.metrics.connected); got != 1 {
		t.Errorf("ssegate_cluster_connected = %v after reconnecting", got)
	}
}

// The liveness probe: a subscription that goes silent without closing (a
// NAT timeout, a failover) is found dead and rebuilt, and the events
// appended meanwhile are read.
func TestProbeDetectsSilentSubscription(t *testing.T) {
	v := newEnv(t)
	var h holes
	a := v.open()
	b := v.open(func(o *Options) { o.dialSub = h.dial })
	const key = "k1"
	col, pos := following(t, a, b, key)

	h.cut(false)
	cutAt := time.Now()
	pos = appendN(t, a, key, pos, 2, "silent")
	eventually(t, 5*time.Second, "B's probe finds the subscription dead and B catches up", func() bool {
		_, last, _ := col.at()
		return last == pos.Last
	})
	t.Logf("caught up %v after the subscription went silent (probe timeout %v)", time.Since(cutAt), b.opts.probeTimeout)
	if got := testutil.ToFloat64(b.metrics.errors.WithLabelValues(opProbe)); got < 1 {
		t.Errorf("probe errors = %v, want the lost probe counted", got)
	}
	// And it keeps working on the new subscription.
	pos = appendN(t, a, key, pos, 1, "after")
	eventually(t, 2*time.Second, "B follows on the new subscription", func() bool { _, last, _ := col.at(); return last == pos.Last })
}

// CLIENT KILL of the subscriber connection, as an operator or a proxy
// would: the engine resubscribes at once, still connected, and reads what
// it missed.
func TestKilledSubscriptionRecovers(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(), v.open()
	const key = "k1"
	col, pos := following(t, a, b, key)

	up, connCh := b.WatchConnected()
	if !up {
		t.Fatal("B not connected")
	}
	name := "ssegate-sub-" + b.token[:8]
	list, err := v.raw.ClientList(bg).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(line, " name="+name+" ") {
			continue
		}
		id := strings.TrimPrefix(strings.Fields(line)[0], "id=")
		if err := v.raw.Do(bg, "CLIENT", "KILL", "ID", id).Err(); err != nil {
			t.Fatal(err)
		}
		killed++
	}
	if killed != 1 {
		t.Fatalf("killed %d connections named %s, want B's one subscriber", killed, name)
	}
	pos = appendN(t, a, key, pos, 2, "killed")
	eventually(t, 5*time.Second, "B recovers and catches up", func() bool { _, last, _ := col.at(); return last == pos.Last })
	if got := strings.Join(col.data(), ","); got != "killed-0,killed-1" {
		t.Errorf("B got %s", got)
	}
	// Commands worked all along: B stayed connected, so its keys were
	// never polled alone and its clients got no resync.
	select {
	case <-connCh:
		t.Error("B was disconnected by the loss of its subscription alone")
	default:
	}
}

func TestCloseReleasesLeasesAndLeaves(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(), v.open()
	if held, _, _, _ := a.tryAcquire(bg, "k1", 0); !held {
		t.Fatal("no lease")
	}
	a.Close()
	if held, _, _, err := b.tryAcquire(context.Background(), "k1", 0); err != nil || !held {
		t.Errorf("B after A closed: held %v, %v; want the lease at once", held, err)
	}
	if _, ok := <-a.Nudges(); ok {
		t.Error("Nudges not closed")
	}
}

// following makes b follow key, a write its first body, and waits until b
// has it: the start of every connection test.
func following(t *testing.T, a, b *Engine, key string) (*collector, position) {
	t.Helper()
	col := newCollector(t)
	f, err := b.follow(key, col.fn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	pos, err := a.append(bg, key, position{}, write{Body: []byte("first")})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "B follows", func() bool { _, last, _ := col.at(); return last == pos.Last })
	return col, pos
}
