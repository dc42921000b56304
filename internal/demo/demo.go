// Package demo is ssegate's one-command demo: an example legacy
// notifications API (legacyapi) that changes by itself every few seconds and
// nudges the gateway when it does, serving a page that shows the live list
// over EventSource, and the gateway in front of it, all in one process.
package demo

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/ssegate/ssegate/config"
	"github.com/ssegate/ssegate/internal/app"
	"github.com/ssegate/ssegate/internal/legacyapi"
	"github.com/ssegate/ssegate/nudge/nudgeapi"
)

//go:embed page.html
var page []byte

// Users are the demo's users; DefaultUser answers requests without the
// "user" cookie, so curl works too.
var Users = []string{"demo", "alice", "bob"}

// DefaultUser is the user of requests without a "user" cookie.
const DefaultUser = "demo"

// StatusPath is the demo's status document; the page streams it through the
// gateway like any other polled JSON (it arrives as JSON Patch events).
const StatusPath = "/demo/status"

// LegacyInterval is how often the page the demo replaces polled: the
// gateway's SSEGATE_LEGACY_INTERVAL in the demo, and the page's "old page"
// counter (it reads it from the status document).
const LegacyInterval = 10 * time.Second

// Options configure a Demo.
type Options struct {
	// Every is the time between two generated changes, each for the next
	// user in turn, so a user changes every len(Users) × Every: less often
	// than the old page polled, as with most notifications. Default 5s.
	Every time.Duration
	// Logger receives the demo's logs. Default: discard.
	Logger *slog.Logger
}

// Demo is the example API with its page.
type Demo struct {
	API  *legacyapi.API
	opts Options
	mux  *http.ServeMux

	mu     sync.Mutex
	nextID int
	nudge  func(ctx context.Context, path, identity string) error
	// polled carries users whose list the gateway just fetched: their
	// status document (the page's counter) is nudged, so it is never stale.
	polled chan string
}

// New returns a demo whose users each start with a few notifications.
func New(opts Options) *Demo {
	if opts.Every <= 0 {
		opts.Every = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Demo{API: legacyapi.New(), opts: opts, polled: make(chan string, 16)}
	d.API.DefaultUser = DefaultUser
	for _, u := range Users {
		d.API.AddUser(u)
		for range 3 {
			d.API.Add(u, d.newItem(u))
		}
	}
	d.mux = http.NewServeMux()
	d.mux.HandleFunc(legacyapi.Path, func(w http.ResponseWriter, r *http.Request) {
		d.API.ServeHTTP(w, r)
		select {
		case d.polled <- d.API.User(r):
		default: // a nudge is on its way already
		}
	})
	d.mux.HandleFunc("GET "+StatusPath, d.serveStatus)
	d.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(page) // the client may have left; nothing to do
	})
	return d
}

func (d *Demo) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.mux.ServeHTTP(w, r) }

var topics = []string{"commented on your post", "liked your photo", "mentioned you", "shared a document", "invited you to a meeting", "replied to your comment"}
var people = []string{"Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Radia"}

// newItem makes a notification for user with a fresh id.
func (d *Demo) newItem(user string) string {
	d.mu.Lock()
	d.nextID++
	id := d.nextID
	d.mu.Unlock()
	b, _ := json.Marshal(map[string]any{ // a map of strings and ints always marshals
		"id":    id,
		"user":  user,
		"title": people[rand.N(len(people))] + " " + topics[rand.N(len(topics))],
		"time":  time.Now().UTC().Format(time.RFC3339),
		"read":  false,
	})
	return string(b)
}

// Change makes one change for user: mostly a new notification, sometimes a
// notification marked read, sometimes one deleted. Then it nudges the
// gateway, as a real backend would after writing.
func (d *Demo) Change(ctx context.Context, user string) {
	items := d.API.Items(user)
	switch r := rand.N(100); {
	case r < 20 && len(items) > 0:
		var it map[string]any
		_ = json.Unmarshal(items[rand.N(len(items))], &it) // our own JSON
		it["read"] = true
		b, _ := json.Marshal(it)
		d.API.Update(user, string(b))
	case r < 35 && len(items) > 4 || len(items) > 12:
		var it struct{ ID json.RawMessage }
		_ = json.Unmarshal(items[len(items)-1], &it)
		d.API.Delete(user, string(it.ID))
	default:
		d.API.Add(user, d.newItem(user))
	}
	d.Nudge(ctx, user)
}

// Nudge tells the gateway that user's list changed.
func (d *Demo) Nudge(ctx context.Context, user string) { d.nudgePath(ctx, legacyapi.Path, user) }

func (d *Demo) nudgePath(ctx context.Context, path, user string) {
	d.mu.Lock()
	nudge := d.nudge
	d.mu.Unlock()
	if nudge == nil {
		return
	}
	// The page always sets the cookie "user". A request without it (curl)
	// is the default user too, but its key has no identity to name: only a
	// nudge of the whole path would reach it, and that would poll every
	// user's key. It sees the default user's changes by polling instead.
	if err := nudge(ctx, path, "user="+user); err != nil && ctx.Err() == nil {
		d.opts.Logger.Warn("demo: nudge failed", "err", err)
	}
}

// SetNudge sets how the demo nudges the gateway about a path.
func (d *Demo) SetNudge(f func(ctx context.Context, path, identity string) error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nudge = f
}

// Run makes a change every Every, for each user in turn, and keeps the
// status documents fresh, until ctx is done.
func (d *Demo) Run(ctx context.Context) {
	t := time.NewTicker(d.opts.Every)
	defer t.Stop()
	for i := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.Change(ctx, Users[i%len(Users)])
			i++
		case user := <-d.polled:
			d.nudgePath(ctx, StatusPath, user)
		}
	}
}

// Status is the document at StatusPath.
type Status struct {
	User string `json:"user"`
	// UserPolls is how many times the gateway fetched this user's list.
	UserPolls int `json:"userPolls"`
	// AllPolls is how many list requests the API served in all.
	AllPolls int `json:"allPolls"`
	// Items is how many notifications the user has.
	Items int `json:"items"`
	// LegacyIntervalSeconds is how often the old page polled.
	LegacyIntervalSeconds float64 `json:"legacyIntervalSeconds"`
}

func (d *Demo) serveStatus(w http.ResponseWriter, r *http.Request) {
	user := d.API.User(r)
	st := Status{User: user, UserPolls: d.API.Polls(user), AllPolls: d.API.TotalPolls(), Items: len(d.API.Items(user)),
		LegacyIntervalSeconds: LegacyInterval.Seconds()}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_ = json.NewEncoder(w).Encode(st) // the client may have left
}

// Ready is what Run tells its caller once everything listens.
type Ready struct {
	Gateway app.Listening
	Demo    *Demo
	URL     string // the page, through the gateway
}

// Run serves the demo API on a loopback port and the gateway in front of it
// until ctx is done. cfg is the gateway's configuration; its upstream is
// the demo's, its load contract is the demo page's old interval
// (LegacyInterval), and a nudge token is made up when none is set.
// opts.Logger receives the gateway's logs too.
func Run(ctx context.Context, cfg config.Config, opts Options, onReady func(Ready)) error {
	cfg.LegacyInterval = LegacyInterval
	if cfg.NudgeToken == "" {
		b := make([]byte, 16)
		crand.Read(b) // never fails (crypto/rand since Go 1.24)
		cfg.NudgeToken = hex.EncodeToString(b)
	}
	d := New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo API: %w", err)
	}
	api := &http.Server{Handler: d, ReadHeaderTimeout: 10 * time.Second}
	go api.Serve(ln)
	defer api.Close()
	upstream := &url.URL{Scheme: "http", Host: ln.Addr().String()}

	var wg sync.WaitGroup
	defer wg.Wait() // after cancel (defers run last first): the generator has stopped
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return app.Run(ctx, cfg, app.Options{
		Logger:   opts.Logger,
		Upstream: upstream,
		OnReady: func(l app.Listening) {
			d.SetNudge(nudger(l, cfg.NudgeToken))
			wg.Add(1)
			go func() { defer wg.Done(); d.Run(ctx) }()
			host := "localhost"
			if _, port, err := net.SplitHostPort(l.Main.String()); err == nil {
				host = net.JoinHostPort(host, port)
			}
			if onReady != nil {
				onReady(Ready{Gateway: l, Demo: d, URL: l.Scheme + "://" + host + "/"})
			}
		},
	})
}

// nudger posts nudges to the gateway's admin listener, or to its main
// listener when the admin listener is off (our own certificate, on loopback).
func nudger(l app.Listening, token string) func(ctx context.Context, path, identity string) error {
	target := "http://" + loopback(l.Metrics) + nudgeapi.Path
	client := &http.Client{Timeout: 5 * time.Second}
	if l.Metrics == nil {
		target = l.Scheme + "://" + loopback(l.Main) + nudgeapi.Path
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // our own listener on loopback
	}
	return func(ctx context.Context, path, identity string) error {
		return nudgeapi.Send(ctx, client, target, token, nudgeapi.Message{Path: path, Identity: identity})
	}
}

// loopback turns a wildcard listen address into one a client can dial.
func loopback(a net.Addr) string {
	if a == nil {
		return ""
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
