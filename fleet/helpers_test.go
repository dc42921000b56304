package fleet

import (
	"context"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// The tests run against a real Redis: Lua, streams, pub/sub and expiry are
// what they test. Each test uses its own key prefix in database 9 and
// deletes its keys at the end.
const (
	redisAddr = "127.0.0.1:6379"
	redisDB   = 9
	redisURL  = "redis://" + redisAddr + "/9"
)

// needRedis skips the test when no Redis answers, unless
// SSEGATE_REDIS_REQUIRE=1 (CI), where that is a failure.
func needRedis(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp", redisAddr, 500*time.Millisecond)
	if err != nil {
		if os.Getenv("SSEGATE_REDIS_REQUIRE") == "1" {
			t.Fatalf("no Redis at %s and SSEGATE_REDIS_REQUIRE=1: %v", redisAddr, err)
		}
		t.Skip("no Redis at 127.0.0.1:6379")
	}
	c.Close()
}

// env is one test's namespace in Redis.
type env struct {
	t      *testing.T
	prefix string
	raw    *redis.Client // for the test's own look and damage
}

func newEnv(t *testing.T) *env {
	t.Helper()
	needRedis(t)
	v := &env{t: t, prefix: "ssegate-test-" + randomHex(6) + ":", raw: redis.NewClient(&redis.Options{Addr: redisAddr, DB: redisDB})}
	t.Cleanup(func() {
		v.flush()
		v.raw.Close()
	})
	return v
}

// flush deletes every key of the test's prefix, as a FLUSH would.
func (v *env) flush() {
	ctx := context.Background()
	iter := v.raw.Scan(ctx, 0, v.prefix+"*", 100).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		v.t.Errorf("scan: %v", err)
	}
	if len(keys) > 0 {
		if err := v.raw.Del(ctx, keys...).Err(); err != nil {
			v.t.Errorf("del: %v", err)
		}
	}
}

// testOptions are short: real Redis time cannot be faked, so leases and
// probes are a few hundred milliseconds.
func (v *env) options() Options {
	return Options{
		Prefix:        v.prefix,
		HistorySize:   100,
		LeaseTime:     300 * time.Millisecond,
		Timeout:       300 * time.Millisecond,
		probeInterval: 100 * time.Millisecond,
		probeTimeout:  400 * time.Millisecond,
		Registerer:    prometheus.NewRegistry(),
	}
}

func (v *env) open(mod ...func(*Options)) *Engine {
	v.t.Helper()
	return v.openURL(redisURL, mod...)
}

func (v *env) openURL(url string, mod ...func(*Options)) *Engine {
	v.t.Helper()
	o := v.options()
	for _, m := range mod {
		m(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	e, err := Open(ctx, url, o)
	if err != nil {
		v.t.Fatalf("Open: %v", err)
	}
	v.t.Cleanup(func() { e.Close() })
	return e
}

// eventually waits up to d for cond, checking every 10 ms.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// holeConn is a connection that can go silent: once cut, it swallows what
// is written and never returns what arrives, but stays open, as a
// connection through a NAT that forgot it does. read deadlines still apply.
type holeConn struct {
	net.Conn
	cut *atomic.Bool
}

func (c holeConn) Read(b []byte) (int, error) {
	for {
		n, err := c.Conn.Read(b)
		if err != nil || !c.cut.Load() {
			return n, err
		}
	}
}

func (c holeConn) Write(b []byte) (int, error) {
	if c.cut.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// holes dials connections that cut() silences at once, all of them; new
// connections after that work, unless it was a partition: then they are
// silent from the start.
type holes struct {
	mu        sync.Mutex
	flags     []*atomic.Bool
	partition bool
}

func (h *holes) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	f := new(atomic.Bool)
	h.mu.Lock()
	f.Store(h.partition)
	h.flags = append(h.flags, f)
	h.mu.Unlock()
	return holeConn{Conn: c, cut: f}, nil
}

func (h *holes) cut(partition bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.partition = partition
	for _, f := range h.flags {
		f.Store(true)
	}
	h.flags = nil
}

// tcpProxy forwards a local port to Redis and can be stopped (connections
// reset, new ones refused) and started again on the same port.
type tcpProxy struct {
	t     *testing.T
	addr  string
	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newProxy(t *testing.T) *tcpProxy {
	p := &tcpProxy{t: t, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.stop)
	return p
}

func (p *tcpProxy) start() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy restart: %v", err)
	}
	p.serve(ln)
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", redisAddr)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = struct{}{}, struct{}{}
			p.mu.Unlock()
			p.wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer p.wg.Done()
				_, _ = io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
}

func (p *tcpProxy) stop() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
	p.mu.Unlock()
	p.wg.Wait()
}
