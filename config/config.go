// Package config reads ssegate's configuration from SSEGATE_* environment
// variables and validates it into one clear message per problem.
//
// Every field's `help` tag is printed by `ssegate -h` and checked against the
// README's configuration table by a test, so the three never drift apart.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/ssegate/ssegate/poller"
)

// Prefix is put in front of every variable name.
const Prefix = "SSEGATE_"

// MinPollInterval is the shortest SSEGATE_POLL_INTERVAL accepted: below it a
// single key would poll the upstream harder than any browser tab did.
const MinPollInterval = 100 * time.Millisecond

// Config is the whole configuration. The zero value is not useful: use Load.
type Config struct {
	// ListenAddr is the main TLS (or h2c) listener. Default ":8443".
	ListenAddr string `env:"LISTEN_ADDR" envDefault:":8443" help:"address of the main listener (TLS, HTTP/2 and HTTP/1.1)"`
	// UpstreamURL is the legacy API every request goes to. Required.
	UpstreamURL string `env:"UPSTREAM_URL" help:"absolute http or https URL of the legacy API (required, unless -demo)"`
	// MetricsAddr serves /metrics, /healthz and /readyz. Default ":9090"; empty disables.
	MetricsAddr string `env:"METRICS_ADDR" envDefault:":9090" help:"address of the metrics and health listener; empty or off disables it"`

	// TLSCertFile and TLSKeyFile name a PEM pair; both or neither. Default: none (self-signed).
	TLSCertFile string `env:"TLS_CERT_FILE" help:"PEM certificate chain; reloaded when it changes on disk"`
	TLSKeyFile  string `env:"TLS_KEY_FILE" help:"PEM private key for TLS_CERT_FILE"`
	// CertDir keeps the generated self-signed pair. Default: "<user config dir>/ssegate/certs".
	CertDir string `env:"CERT_DIR" help:"where the generated self-signed certificate is kept (default: <user config dir>/ssegate/certs)"`
	// TLSHosts are the DNS names and IPs of the generated certificate. Default "localhost,127.0.0.1,::1".
	TLSHosts []string `env:"TLS_HOSTS" envDefault:"localhost,127.0.0.1,::1" help:"names and IPs the generated certificate covers"`
	// H2C serves cleartext HTTP/2 and HTTP/1.1 instead of TLS. Default false.
	H2C bool `env:"H2C" envDefault:"false" help:"serve cleartext HTTP/2 (h2c) for TLS ended at a load balancer"`
	// TrustedProxies are CIDRs of the load balancers whose forwarding headers are kept. Default: none.
	TrustedProxies []string `env:"TRUSTED_PROXIES" help:"comma-separated CIDRs of load balancers whose X-Forwarded-*, Forwarded and X-Real-IP headers are kept; empty: none"`
	// PassWebSockets forwards WebSocket upgrades to the upstream. Default false.
	PassWebSockets bool `env:"PASS_WEBSOCKETS" envDefault:"false" help:"forward WebSocket upgrades to the upstream (other upgrades never are)"`

	// LogLevel is debug, info, warn or error. Default "info".
	LogLevel string `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
	// LogFormat is text or json. Default "text".
	LogFormat string `env:"LOG_FORMAT" envDefault:"text" help:"text or json"`
	// ShutdownTimeout bounds the drain on SIGINT/SIGTERM. Default 10s.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s" help:"how long a drain on SIGTERM may take"`

	// StreamPaths are http.ServeMux patterns of paths that may stream. Default: every path.
	StreamPaths []string `env:"STREAM_PATHS" envDefault:"/" help:"comma-separated http.ServeMux patterns of paths served as event streams"`
	// CORSOrigins may open event streams from another origin: exact
	// origins (with credentials), or "*" for any origin without credentials.
	// Default: none.
	CORSOrigins []string `env:"CORS_ORIGINS" help:"comma-separated origins (https://app.example.com) whose pages may open event streams, with credentials; * for any origin without credentials; empty: none"`
	// IdentityHeaders decide which clients share a poller, and are sent upstream. Default "Authorization,Cookie".
	IdentityHeaders []string `env:"IDENTITY_HEADERS" envDefault:"Authorization,Cookie" help:"request headers that identify a user: part of the stream key, sent upstream"`
	// KeyByClientIP makes the client's address part of the stream key. Default false.
	KeyByClientIP bool `env:"KEY_BY_CLIENT_IP" envDefault:"false" help:"make the client's address part of the stream key, for upstreams that authorise by address"`
	// PollInterval is the shortest time between two polls of one key, kept
	// while it changes; unchanged keys stretch towards PollIntervalMax. Default 2s, at least 100ms.
	PollInterval time.Duration `env:"POLL_INTERVAL" envDefault:"2s" help:"shortest time between two polls of a key, kept while it changes (at least 100ms); an unchanged key is polled less often, up to SSEGATE_POLL_INTERVAL_MAX apart"`
	// PollIntervalMax is the longest interval of an unchanged key. Default 30s.
	PollIntervalMax time.Duration `env:"POLL_INTERVAL_MAX" envDefault:"30s" help:"longest time between polls of a key that does not change (the interval stretches ×1.5 per unchanged poll)"`
	// LegacyInterval is how often each page ssegate replaces used to poll: the
	// load contract keeps every key's regular polls within what its
	// subscribers' pages would have made. Default 60s; 0 turns it off.
	LegacyInterval time.Duration `env:"LEGACY_INTERVAL" envDefault:"60s" help:"how often each page ssegate replaces used to poll; a key's regular polls never cost more than its subscribers' pages did; 0 turns the contract off"`
	// UpstreamMaxRPS caps polls per second across all keys. Default 0 (no cap).
	UpstreamMaxRPS float64 `env:"UPSTREAM_MAX_RPS" envDefault:"0" help:"most polls per second across all keys, spread evenly; 0 means no cap"`
	// UpstreamConcurrency caps polls in flight. Default 64; 0 means no cap.
	UpstreamConcurrency int `env:"UPSTREAM_CONCURRENCY" envDefault:"64" help:"most polls in flight at once; 0 means no cap"`
	// NudgeToken enables POST /.well-known/ssegate/nudge with this bearer token. Default "" (disabled).
	NudgeToken string `env:"NUDGE_TOKEN" help:"bearer token for POST /.well-known/ssegate/nudge; empty disables nudges"`
	// PollTimeout bounds one upstream poll. Default 10s.
	PollTimeout time.Duration `env:"POLL_TIMEOUT" envDefault:"10s" help:"time limit of one upstream poll"`
	// MaxBodyBytes rejects larger poll answers. Default 1 MiB.
	MaxBodyBytes int64 `env:"MAX_BODY_BYTES" envDefault:"1048576" help:"largest upstream answer a poll accepts, in bytes"`
	// MaxBackoff caps the wait after failed polls. Default 1m.
	MaxBackoff time.Duration `env:"MAX_BACKOFF" envDefault:"1m" help:"longest wait between polls of a failing key"`
	// Linger keeps a poller without subscribers alive for reconnects. Default 30s.
	Linger time.Duration `env:"LINGER" envDefault:"30s" help:"how long a key is still polled after its last subscriber left"`
	// DiffMode is auto, items, patch or snapshot. Default "auto".
	DiffMode string `env:"DIFF_MODE" envDefault:"auto" help:"auto, items, patch or snapshot"`
	// ItemsPointer is a JSON Pointer (RFC 6901) to the array in items mode. Default "" (the whole body).
	ItemsPointer string `env:"ITEMS_POINTER" help:"JSON Pointer to the array of items; empty means the whole body"`
	// ItemIDField names the field that identifies an item. Default "id".
	ItemIDField string `env:"ITEM_ID_FIELD" envDefault:"id" help:"field that identifies an item in items mode"`
	// HistorySize is how many events per key are kept for resume. Default 1000.
	HistorySize int `env:"HISTORY_SIZE" envDefault:"1000" help:"events kept per key for Last-Event-ID resume"`
	// HistoryBytes bounds the encoded events kept per key. Default 256 KiB.
	HistoryBytes int `env:"HISTORY_BYTES" envDefault:"262144" help:"bytes of encoded events kept per key for Last-Event-ID resume"`
	// ClientBuffer is how many events may wait for one slow client. Default 256.
	ClientBuffer int `env:"CLIENT_BUFFER" envDefault:"256" help:"events queued for one client before it is evicted as slow"`
	// Retry is the reconnect delay sent to clients in the retry field. Default 3s.
	Retry time.Duration `env:"RETRY" envDefault:"3s" help:"reconnect delay announced to clients (SSE retry field)"`
	// StreamMaxDuration ends each stream cleanly after about this long. Default 0: never.
	StreamMaxDuration time.Duration `env:"STREAM_MAX_DURATION" envDefault:"0s" help:"end each event stream cleanly after about this long (±10%), so clients reconnect and resume, spreading over replicas; 0 means never"`
	// HeartbeatInterval is the time between comment lines on idle streams. Default 15s.
	HeartbeatInterval time.Duration `env:"HEARTBEAT_INTERVAL" envDefault:"15s" help:"time between keep-alive comments on a stream"`

	// MaxConnections caps open event streams. Default 0 (no cap).
	MaxConnections int `env:"MAX_CONNECTIONS" envDefault:"0" help:"most event streams open at once (503 with Retry-After beyond); 0 means no cap"`
	// MaxStreamsPerIP caps event streams per client address. Default 0 (no cap).
	MaxStreamsPerIP int `env:"MAX_STREAMS_PER_IP" envDefault:"0" help:"most event streams from one client address; 0 means no cap"`
	// MaxKeys caps distinct keys polled at once. Default 0 (no cap).
	MaxKeys int `env:"MAX_KEYS" envDefault:"0" help:"most distinct keys polled at once (new keys get 503 beyond); bounds upstream load; 0 means no cap"`

	// RedisURL joins a fleet of replicas sharing polls and history through
	// Redis (redis:// or rediss://, with user, password and database).
	// Default "": one process, everything in memory.
	RedisURL string `env:"REDIS_URL" help:"redis:// or rediss:// URL of the Redis the replicas of a fleet share (one poll per key for the fleet, resume on any replica); empty: one process, all in memory"`
	// RedisPrefix starts every Redis key and channel name. Default "ssegate:".
	RedisPrefix string `env:"REDIS_PREFIX" envDefault:"ssegate:" help:"prefix of every Redis key and channel ssegate uses, so fleets can share one Redis"`
	// LeaseTime is how long a key's poll lease outlives its holder. Default 5s.
	LeaseTime time.Duration `env:"LEASE_TIME" envDefault:"5s" help:"how long a replica's poll lease on a key lasts unless renewed: the longest a dead holder's keys go unpolled"`
	// KeySecret keys the hashes that name keys and identities. Default: a
	// random secret per process, or, with REDIS_URL, one shared through Redis.
	KeySecret string `env:"KEY_SECRET" help:"secret (at least 32 characters) of the hashes that name stream keys; empty: random per process, or shared through Redis with REDIS_URL"`

	// Pprof serves /debug/pprof/ on the metrics listener. Default false.
	Pprof bool `env:"PPROF" envDefault:"false" help:"serve Go's /debug/pprof/ profiles on the metrics listener (keep that listener private)"`

	// Demo starts the built-in example API and puts the gateway in front of it. Default false.
	Demo bool `env:"DEMO" envDefault:"false" help:"run the built-in demo API behind the gateway (same as -demo)"`
}

// Load reads the configuration from environ ("KEY=value" pairs, as os.Environ
// returns them). It reports malformed values; Validate reports the rest.
func Load(environ []string) (Config, error) {
	var c Config
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	err := env.ParseWithOptions(&c, env.Options{Prefix: Prefix, Environment: vars})
	// env applies the default to a variable set to "", but here "" (or
	// "off") is how an operator turns the admin listener off.
	if v, ok := vars[Prefix+"METRICS_ADDR"]; ok && (v == "" || v == "off") {
		c.MetricsAddr = ""
	}
	if err == nil {
		return c, nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return c, err
	}
	msgs := make([]string, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			key := Prefix + fieldKey(pe.Name)
			msgs = append(msgs, fmt.Sprintf("%s: must be %s, got %q", key, kindOf(pe.Type), vars[key]))
			continue
		}
		msgs = append(msgs, e.Error())
	}
	return c, errors.New(strings.Join(msgs, "; "))
}

func fieldKey(name string) string {
	f, ok := reflect.TypeFor[Config]().FieldByName(name)
	if !ok {
		return name
	}
	return f.Tag.Get("env")
}

func kindOf(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "a duration such as 500ms, 2s or 1m"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "a whole number"
	case t.Kind() == reflect.Float64:
		return "a number"
	default:
		return "a " + t.String()
	}
}

// Validate checks values and relations between them. Its error names every
// offending variable and the value it got.
func (c *Config) Validate() error {
	var errs []string
	bad := func(key, format string, args ...any) {
		errs = append(errs, Prefix+key+": "+fmt.Sprintf(format, args...))
	}

	if c.UpstreamURL == "" && !c.Demo {
		bad("UPSTREAM_URL", "is required: the absolute http or https URL of the legacy API (or run with -demo)")
	} else if c.UpstreamURL != "" {
		if _, err := c.Upstream(); err != nil {
			bad("UPSTREAM_URL", "%v, got %q", err, c.UpstreamURL)
		}
	}
	checkAddr := func(key, v string, optional bool) {
		if v == "" && optional {
			return
		}
		if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
			bad(key, "must be host:port or :port, got %q", v)
		}
	}
	checkAddr("LISTEN_ADDR", c.ListenAddr, false)
	checkAddr("METRICS_ADDR", c.MetricsAddr, true)
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("TLS_CERT_FILE", "and SSEGATE_TLS_KEY_FILE must be set together, got cert %q and key %q", c.TLSCertFile, c.TLSKeyFile)
	}
	if c.H2C && c.TLSCertFile != "" {
		bad("H2C", "serves cleartext, so SSEGATE_TLS_CERT_FILE must not be set")
	}
	if len(c.TLSHosts) == 0 && c.TLSCertFile == "" && !c.H2C {
		bad("TLS_HOSTS", "must name at least one host for the generated certificate")
	}
	if _, err := c.SlogLevel(); err != nil {
		bad("LOG_LEVEL", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("LOG_FORMAT", "must be text or json, got %q", c.LogFormat)
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be positive, got %q", d.String())
		}
	}
	positive("SHUTDOWN_TIMEOUT", c.ShutdownTimeout)
	if c.PollInterval < MinPollInterval {
		bad("POLL_INTERVAL", "must be at least %s, got %q", MinPollInterval, c.PollInterval.String())
	}
	if c.PollIntervalMax < c.PollInterval {
		bad("POLL_INTERVAL_MAX", "must be at least SSEGATE_POLL_INTERVAL (%s), got %q", c.PollInterval, c.PollIntervalMax.String())
	}
	if c.LegacyInterval < 0 {
		bad("LEGACY_INTERVAL", "must be 0 (no contract) or positive, got %q", c.LegacyInterval.String())
	}
	if c.UpstreamMaxRPS < 0 {
		bad("UPSTREAM_MAX_RPS", "must be 0 (no cap) or positive, got %g", c.UpstreamMaxRPS)
	}
	for _, lim := range []struct {
		key string
		v   int
	}{{"MAX_CONNECTIONS", c.MaxConnections}, {"MAX_STREAMS_PER_IP", c.MaxStreamsPerIP}, {"MAX_KEYS", c.MaxKeys}} {
		if lim.v < 0 {
			bad(lim.key, "must be 0 (no cap) or positive, got %d", lim.v)
		}
	}
	if c.UpstreamConcurrency < 0 {
		bad("UPSTREAM_CONCURRENCY", "must be 0 (no cap) or positive, got %d", c.UpstreamConcurrency)
	}
	if c.RedisURL != "" {
		// Never echo the URL: it may hold a password.
		if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			bad("REDIS_URL", "must be redis://[user:password@]host:port[/db] or rediss://...")
		}
	}
	if strings.ContainsAny(c.RedisPrefix, "{}") {
		bad("REDIS_PREFIX", "must not contain { or }: they delimit Redis Cluster hash tags")
	}
	if c.LeaseTime < 300*time.Millisecond {
		bad("LEASE_TIME", "must be at least 300ms, got %v", c.LeaseTime)
	}
	if c.KeySecret != "" && len(c.KeySecret) < 32 {
		bad("KEY_SECRET", "must be at least 32 characters, got %d", len(c.KeySecret))
	}
	if c.NudgeToken != "" && len(c.NudgeToken) < 16 {
		bad("NUDGE_TOKEN", "must be at least 16 characters (it guards the upstream budget), got %d", len(c.NudgeToken))
	}
	positive("POLL_TIMEOUT", c.PollTimeout)
	positive("LINGER", c.Linger)
	positive("RETRY", c.Retry)
	positive("HEARTBEAT_INTERVAL", c.HeartbeatInterval)
	if c.MaxBackoff < c.PollInterval {
		bad("MAX_BACKOFF", "must be at least SSEGATE_POLL_INTERVAL (%s), got %q", c.PollInterval, c.MaxBackoff.String())
	}
	if c.MaxBodyBytes <= 0 {
		bad("MAX_BODY_BYTES", "must be positive, got %d", c.MaxBodyBytes)
	}
	if c.HistorySize < 1 {
		bad("HISTORY_SIZE", "must be at least 1, got %d", c.HistorySize)
	}
	if c.HistoryBytes < 1 {
		bad("HISTORY_BYTES", "must be at least 1, got %d", c.HistoryBytes)
	}
	if c.ClientBuffer < 1 {
		bad("CLIENT_BUFFER", "must be at least 1, got %d", c.ClientBuffer)
	}
	if modes := poller.DiffModes(); !slices.Contains(modes, poller.DiffMode(c.DiffMode)) {
		names := make([]string, len(modes))
		for i, m := range modes {
			names[i] = string(m)
		}
		list := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
		bad("DIFF_MODE", "must be %s, got %q", list, c.DiffMode)
	}
	if c.ItemsPointer != "" && !strings.HasPrefix(c.ItemsPointer, "/") {
		bad("ITEMS_POINTER", "must be a JSON Pointer starting with /, got %q", c.ItemsPointer)
	}
	if c.ItemIDField == "" {
		bad("ITEM_ID_FIELD", "must not be empty")
	}
	for _, h := range c.IdentityHeaders {
		if h == "" || strings.ContainsAny(h, " \t\r\n:") {
			bad("IDENTITY_HEADERS", "must be comma-separated header names, got %q", strings.Join(c.IdentityHeaders, ","))
			break
		}
	}
	if _, err := c.TrustedProxyPrefixes(); err != nil {
		bad("TRUSTED_PROXIES", "%v", err)
	}
	if len(c.StreamPaths) == 0 {
		bad("STREAM_PATHS", "must name at least one pattern (\"/\" streams every path)")
	}
	for _, p := range c.StreamPaths {
		if err := checkPattern(p); err != nil {
			bad("STREAM_PATHS", "%v, got %q", err, p)
		}
	}
	if err := checkOrigins(c.CORSOrigins); err != nil {
		bad("CORS_ORIGINS", "%v", err)
	}

	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// checkPattern reports whether http.ServeMux accepts p, without panicking.
func checkPattern(p string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("not an http.ServeMux pattern: %v", r)
		}
	}()
	http.NewServeMux().Handle(p, http.NotFoundHandler())
	return nil
}

// checkOrigins accepts "*" alone or a list of origins serialized as
// browsers send them in the Origin header (RFC 6454 §6.1): a request's
// Origin is compared byte for byte, so "https://App.example.com/" would
// never match and is refused here with the form that would.
func checkOrigins(origins []string) error {
	for _, o := range origins {
		if o == "*" {
			if len(origins) > 1 {
				return fmt.Errorf("* allows every origin and must be alone, got %q", strings.Join(origins, ","))
			}
			return nil
		}
		if err := checkOrigin(o); err != nil {
			return fmt.Errorf("%q %w", o, err)
		}
	}
	return nil
}

func checkOrigin(o string) error {
	const form = "must be an origin such as https://app.example.com (scheme://host[:port], no path)"
	if o == "" || o == "null" {
		return errors.New(form) // "null" is what sandboxed and file: pages send: anyone can be null
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return errors.New(form)
	}
	if strings.Contains(u.Host, "*") {
		return errors.New("has a wildcard: list each origin, or use * alone for any origin without credentials")
	}
	host := strings.ToLower(u.Host)
	if port := u.Port(); (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		host = strings.TrimSuffix(host, ":"+port)
	}
	for _, r := range host {
		if r > 0x7f {
			return errors.New("must spell its host in ASCII (punycode, xn--), as browsers send it")
		}
	}
	canonical := strings.ToLower(u.Scheme) + "://" + host
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return errors.New(form)
	}
	if canonical != o {
		return fmt.Errorf("is not in the form browsers send (lower case, no default port, no trailing slash): use %q", canonical)
	}
	return nil
}

// Upstream parses UpstreamURL: absolute, http or https, with a host and no
// query or fragment (the request supplies those).
func (c *Config) Upstream() (*url.URL, error) {
	u, err := url.Parse(c.UpstreamURL)
	if err != nil {
		return nil, errors.New("must be an absolute http or https URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("must be an absolute http or https URL")
	case u.Host == "":
		return nil, errors.New("must name a host")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("must not have a query or fragment")
	case u.User != nil:
		return nil, errors.New("must not carry credentials (send them from the client)")
	}
	return u, nil
}

// TrustedProxyPrefixes parses TrustedProxies. A bare address is that one
// address.
func (c *Config) TrustedProxyPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("must be comma-separated CIDRs such as 10.0.0.0/8, got %q", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// SlogLevel turns LogLevel into a slog.Level.
func (c *Config) SlogLevel() (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(c.LogLevel))
	return l, err
}

// CertDirOrDefault is CertDir, or "<user config dir>/ssegate/certs" when unset.
func (c *Config) CertDirOrDefault() (string, error) {
	if c.CertDir != "" {
		return c.CertDir, nil
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("%sCERT_DIR: not set and no user config dir: %w", Prefix, err)
	}
	return filepath.Join(base, "ssegate", "certs"), nil
}

// Unknown is a variable that looks like one of ours but that no setting
// reads: a misspelled setting would otherwise be ignored silently.
type Unknown struct {
	Name    string // as set
	Closest string // the known variable nearest by edit distance
}

func (u Unknown) String() string {
	return fmt.Sprintf("%s is not a known variable (closest: %s)", u.Name, u.Closest)
}

// UnknownVariables returns, sorted by name, every variable in environ
// ("KEY=value" pairs) whose name starts with Prefix in any case but is not a
// setting. Values are never looked at: one may be a misspelled token.
func UnknownVariables(environ []string) []Unknown {
	vars := Variables()
	known := make(map[string]bool, len(vars))
	for _, v := range vars {
		known[v.Name] = true
	}
	var out []Unknown
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if known[name] || !strings.HasPrefix(strings.ToUpper(name), Prefix) {
			continue
		}
		u := Unknown{Name: name}
		best := -1
		for _, v := range vars {
			if d := editDistance(strings.ToUpper(name), v.Name); best < 0 || d < best {
				u.Closest, best = v.Name, d
			}
		}
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b Unknown) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Variable describes one environment variable.
type Variable struct {
	Name    string
	Default string
	Help    string
}

// Variables lists every variable, in declaration order.
func Variables() []Variable {
	t := reflect.TypeFor[Config]()
	vars := make([]Variable, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		vars = append(vars, Variable{
			Name:    Prefix + f.Tag.Get("env"),
			Default: f.Tag.Get("envDefault"),
			Help:    f.Tag.Get("help"),
		})
	}
	return vars
}

// PrintUsage writes every variable with its default, for `ssegate -h`.
func PrintUsage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	for _, v := range Variables() {
		def := v.Default
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, def, v.Help)
	}
	return tw.Flush()
}
