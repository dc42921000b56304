// Command ssebench loads an SSE gateway with event streams and times how
// one change reaches every client.
//
// Against ssegate: ssebench serves the upstream itself (on -upstream-addr,
// default 127.0.0.1:8080), so start the gateway in front of it:
//
//	SSEGATE_UPSTREAM_URL=http://127.0.0.1:8080 go run ./cmd/ssegate
//	go run ./cmd/ssebench -clients 5000
//
// Against the stock net/http floor server, in two processes:
//
//	ssebench -serve-floor 127.0.0.1:8444 -floor-metrics 127.0.0.1:9091
//	ssebench -floor -url https://127.0.0.1:8444/events -metrics http://127.0.0.1:9091/metrics -clients 5000
//
// HTTP/1.1 streams, one connection each, as behind a load balancer: add
// -http1 (TLS for an https -url; for cleartext, run the gateway with
// SSEGATE_H2C=true and the floor with -floor-cleartext, and use http URLs).
//
// The load contract's scenario, N users with one tab each, one change per
// user every M seconds, against pages that polled every T (-legacy-interval):
//
//	ssebench -steady -users 1000 -every 120s -legacy-interval 60s -duration 3m [-nudge-token ...]
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ssegate/ssegate/certs"
	"github.com/ssegate/ssegate/internal/bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ssebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		url          = fs.String("url", "https://127.0.0.1:8443/api/notifications", "event stream URL of the gateway; several, comma-separated, spread the clients over a fleet (metrics and nudges go to the first)")
		metrics      = fs.String("metrics", "http://127.0.0.1:9090/metrics", "the gateway's metrics URL (memory, CPU); empty: none")
		upstreamAddr = fs.String("upstream-addr", "127.0.0.1:8080", "where to serve the built-in upstream the gateway polls")
		clients      = fs.Int("clients", 1000, "event streams to open")
		users        = fs.Int("users", 1, "identities the clients are spread over (distinct keys)")
		mux          = fs.Bool("mux", false, "multiplex streams over shared HTTP/2 connections (tabs of one browser)")
		perConn      = fs.Int("streams-per-conn", 100, "streams per connection with -mux")
		http1        = fs.Bool("http1", false, "open each stream on its own HTTP/1.1 connection, as behind a load balancer (TLS for an https -url, cleartext for http)")
		changes      = fs.Int("changes", 5, "changes to time")
		pause        = fs.Duration("pause", 0, "wait between changes (a soak runs -changes × -pause)")
		changeUsers  = fs.Int("change-users", 0, "users each change touches; 0: all")
		nudgeToken   = fs.String("nudge-token", "", "the gateway's SSEGATE_NUDGE_TOKEN: nudge after each change")
		nudgeURL     = fs.String("nudge-url", "http://127.0.0.1:9090/.well-known/ssegate/nudge", "the gateway's nudge endpoint")
		legacy       = fs.Duration("legacy-interval", 60*time.Second, "interval of the polling page being replaced, for the comparison")
		timeout      = fs.Duration("timeout", 60*time.Second, "longest wait for one change to reach every client")
		asJSON       = fs.Bool("json", false, "print the report as JSON")
		floor        = fs.Bool("floor", false, "target the floor server (-serve-floor) instead of ssegate")
		serveFloor   = fs.String("serve-floor", "", "run the stock net/http floor server on this address and wait")
		floorMetrics = fs.String("floor-metrics", "127.0.0.1:9091", "with -serve-floor: where to serve its /metrics")
		floorClear   = fs.Bool("floor-cleartext", false, "with -serve-floor: serve cleartext HTTP/1.1 instead of TLS (HTTP/2 and HTTP/1.1)")
		steady       = fs.Bool("steady", false, "the load contract's scenario: -users users with one stream each, each changing every -every, measured for -duration after -warmup")
		every        = fs.Duration("every", 2*time.Minute, "with -steady: time between two changes of one user")
		warmup       = fs.Duration("warmup", 0, "with -steady: changes before measuring; 0: -legacy-interval")
		duration     = fs.Duration("duration", 3*time.Minute, "with -steady: the measured window")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	if *serveFloor != "" {
		if err := runFloor(ctx, *serveFloor, *floorMetrics, *floorClear, stderr); err != nil {
			fmt.Fprintln(stderr, "ssebench:", err)
			return 1
		}
		return 0
	}

	urls := strings.Split(*url, ",")
	*url = urls[0]
	opts := bench.Options{
		URLs: urls, URL: *url, Clients: *clients, Users: *users, Multiplex: *mux, StreamsPerConn: *perConn, HTTP1: *http1,
		Changes: *changes, Pause: *pause, ChangeUsers: *changeUsers, Timeout: *timeout, Metrics: *metrics,
		LegacyInterval: *legacy, Log: stderr,
	}
	if *floor {
		opts.Change = bench.FloorChange(strings.TrimSuffix(*url, "/events"))
	} else {
		up := bench.NewUpstream(*users)
		ln, err := net.Listen("tcp", *upstreamAddr)
		if err != nil {
			fmt.Fprintln(stderr, "ssebench: upstream:", err)
			return 1
		}
		srv := &http.Server{Handler: up, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		fmt.Fprintf(stderr, "upstream on http://%s; the gateway must poll it (SSEGATE_UPSTREAM_URL=http://%s)\n", ln.Addr(), ln.Addr())
		opts.UpstreamPolls = up.TotalPolls
		opts.FetchedAt = up.FetchedAt
		opts.Change = up.Change
		if *nudgeToken != "" {
			nudge := bench.Nudger(*nudgeURL, *nudgeToken)
			opts.Change = func(ctx context.Context, n int, users []string) (time.Time, error) {
				at, err := up.Change(ctx, n, users)
				if err == nil {
					err = nudge(ctx, users)
				}
				return at, err
			}
		}
	}
	for _, u := range urls {
		if err := waitReachable(ctx, u, 30*time.Second); err != nil {
			fmt.Fprintln(stderr, "ssebench:", err)
			return 1
		}
	}
	if *steady {
		return runSteady(ctx, bench.SteadyOptions{
			URL: *url, Users: *users, Every: *every, Warmup: *warmup, Duration: *duration, LegacyInterval: *legacy,
			Change: opts.Change, UpstreamPolls: opts.UpstreamPolls, Metrics: *metrics,
			Log: func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) },
		}, *asJSON, stdout, stderr)
	}
	rep, err := bench.Run(ctx, opts)
	if err != nil {
		fmt.Fprintln(stderr, "ssebench:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return 1
		}
	} else {
		printTable(stdout, rep)
	}
	if rep.Failed > 0 || rep.Missing > 0 || rep.Duplicates > 0 {
		return 3
	}
	return 0
}

// waitReachable waits until the gateway answers at all.
func waitReachable(ctx context.Context, url string, limit time.Duration) error {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(limit)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not reachable: %w", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func printTable(w io.Writer, r bench.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	mode := "one TLS connection per client"
	switch {
	case r.Multiplex:
		mode = "multiplexed"
	case r.HTTP1:
		mode = "one HTTP/1.1 connection per client"
	}
	row("streams", "%d over %d connections (%s), %d users", r.Clients, r.Connections, mode, r.Users)
	row("opened / failed", "%d / %d in %.1fs", r.Opened, r.Failed, r.OpenSeconds)
	row("deliveries", "%d of %d (%d missing, %d duplicated) over %d changes", r.Delivered, r.Expected, r.Missing, r.Duplicates, r.Changes)
	row("latency from change p50/p99/max", "%.1f / %.1f / %.1f ms", r.LatencyP50MS, r.LatencyP99MS, r.LatencyMaxMS)
	if r.FanoutMaxMS > 0 {
		row("fan-out from fetch p50/p99/max", "%.1f / %.1f / %.1f ms", r.FanoutP50MS, r.FanoutP99MS, r.FanoutMaxMS)
	}
	if r.RSSMB > 0 {
		row("server RSS", "%.1f MB (%.1f KB per stream, %.1f KB per connection; heap %.1f KB, stacks %.1f KB per stream)", r.RSSMB, r.RSSPerStreamKB, r.RSSPerConnKB, r.HeapPerStream, r.StackPerStream)
		row("server goroutines / fds", "%.0f / %.0f", r.Goroutines, r.OpenFDs)
		row("at the end: RSS / goroutines / fds", "%.1f MB / %.0f / %.0f", r.RSSEndMB, r.GoroutinesEnd, r.OpenFDsEnd)
	}
	if r.CPUPer1kEvents > 0 {
		row("server CPU per 1,000 events", "%.3f s", r.CPUPer1kEvents)
	}
	if r.UpstreamPolls > 0 || r.DirectPolls > 0 {
		row("upstream requests", "%d in %.1fs (%.2f/s); direct polling: %.0f (%.2f/s)", r.UpstreamPolls, r.WindowSeconds, r.UpstreamRPS, r.DirectPolls, r.DirectPollingRPS)
	}
	tw.Flush()
}

func runSteady(ctx context.Context, o bench.SteadyOptions, asJSON bool, stdout, stderr io.Writer) int {
	if o.UpstreamPolls == nil {
		fmt.Fprintln(stderr, "ssebench: -steady measures ssegate's upstream, not the floor server")
		return 2
	}
	r, err := bench.RunSteady(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "ssebench:", err)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return 1
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
		row("users", "%d with one stream each (%d failed), a change per user every %.0fs", r.Users, r.Failed, r.EverySeconds)
		row("upstream requests", "%d in %.0fs: %.2f/s (regular %.0f, nudged %.0f)", r.UpstreamPolls, r.WindowSeconds, r.UpstreamRPS, r.RegularPolls, r.NudgedPolls)
		row("the pages, every "+fmt.Sprint(r.LegacySeconds)+"s", "%.2f/s (ssegate_legacy_polling_rps %.2f)", r.LegacyRPS, r.GaugeLegacyRPS)
		row("changes", "%d: %d delivered, %d missing, %d duplicated", r.Changes, r.Delivered, r.Missing, r.Duplicates)
		row("latency from change p50/p99/max", "%.1f / %.1f / %.1f ms", r.LatencyP50MS, r.LatencyP99MS, r.LatencyMaxMS)
		tw.Flush()
	}
	if r.Failed > 0 || r.Missing > 0 || r.Duplicates > 0 {
		return 3
	}
	return 0
}

// runFloor serves the floor server over TLS (HTTP/2 and HTTP/1.1), or
// cleartext HTTP/1.1, and its process metrics, until ctx is done.
func runFloor(ctx context.Context, addr, metricsAddr string, cleartext bool, log io.Writer) error {
	cert, _, _, err := certs.EnsureSelfSigned(os.TempDir()+"/ssebench-floor", []string{"localhost", "127.0.0.1"}, time.Now(), nil)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(!cleartext)
	srv := &http.Server{Addr: addr, Handler: bench.NewFloor(), Protocols: &protos,
		TLSConfig: certs.TLSConfig(certs.Static{Cert: cert}.GetCertificate), ReadHeaderTimeout: 10 * time.Second}
	msrv := &http.Server{Addr: metricsAddr, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
	go msrv.ListenAndServe()
	defer msrv.Close()
	errc := make(chan error, 1)
	scheme := "https"
	if cleartext {
		scheme = "http"
		go func() { errc <- srv.ListenAndServe() }()
	} else {
		go func() { errc <- srv.ListenAndServeTLS("", "") }()
	}
	fmt.Fprintf(log, "floor server on %s://%s/events, metrics on http://%s/metrics\n", scheme, addr, metricsAddr)
	select {
	case <-ctx.Done():
		return srv.Close()
	case err := <-errc:
		return err
	}
}
