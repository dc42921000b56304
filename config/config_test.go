package config_test

import (
	"bytes"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ssegate/ssegate/config"
)

func load(t *testing.T, kv ...string) (config.Config, error) {
	t.Helper()
	env := []string{"SSEGATE_UPSTREAM_URL=http://127.0.0.1:8080"}
	env = append(env, kv...)
	c, err := config.Load(env)
	if err != nil {
		return c, err
	}
	return c, c.Validate()
}

func TestDefaults(t *testing.T) {
	c, err := load(t)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"ListenAddr", c.ListenAddr, ":8443"},
		{"MetricsAddr", c.MetricsAddr, ":9090"},
		{"TLSHosts", strings.Join(c.TLSHosts, ","), "localhost,127.0.0.1,::1"},
		{"ShutdownTimeout", c.ShutdownTimeout, 10 * time.Second},
		{"PollInterval", c.PollInterval, 2 * time.Second},
		{"LegacyInterval", c.LegacyInterval, time.Minute},
		{"PollTimeout", c.PollTimeout, 10 * time.Second},
		{"MaxBodyBytes", c.MaxBodyBytes, int64(1 << 20)},
		{"MaxBackoff", c.MaxBackoff, time.Minute},
		{"Linger", c.Linger, 30 * time.Second},
		{"DiffMode", c.DiffMode, "auto"},
		{"ItemIDField", c.ItemIDField, "id"},
		{"HistorySize", c.HistorySize, 1000},
		{"ClientBuffer", c.ClientBuffer, 256},
		{"Retry", c.Retry, 3 * time.Second},
		{"HeartbeatInterval", c.HeartbeatInterval, 15 * time.Second},
		{"IdentityHeaders", strings.Join(c.IdentityHeaders, ","), "Authorization,Cookie"},
		{"StreamPaths", strings.Join(c.StreamPaths, ","), "/"},
		{"LogLevel", c.LogLevel, "info"},
		{"LogFormat", c.LogFormat, "text"},
		{"H2C", c.H2C, false},
		{"TrustedProxies", len(c.TrustedProxies), 0},
		{"PassWebSockets", c.PassWebSockets, false},
		{"KeyByClientIP", c.KeyByClientIP, false},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestEmptyMetricsAddrDisables(t *testing.T) {
	for _, v := range []string{"", "off"} {
		c, err := load(t, "SSEGATE_METRICS_ADDR="+v)
		if err != nil || c.MetricsAddr != "" {
			t.Errorf("METRICS_ADDR=%q: got %q, %v; want disabled", v, c.MetricsAddr, err)
		}
	}
}

// An empty variable is an unset one: the default applies.
func TestEmptyVariableTakesDefault(t *testing.T) {
	c, err := load(t, "SSEGATE_ITEM_ID_FIELD=", "SSEGATE_TLS_HOSTS=", "SSEGATE_POLL_INTERVAL=")
	if err != nil || c.ItemIDField != "id" || len(c.TLSHosts) != 3 || c.PollInterval != 2*time.Second {
		t.Errorf("got %q %v %v, %v; want the defaults", c.ItemIDField, c.TLSHosts, c.PollInterval, err)
	}
}

func TestValidationMessages(t *testing.T) {
	tests := []struct {
		env  []string
		want string
	}{
		{[]string{"SSEGATE_UPSTREAM_URL="}, `SSEGATE_UPSTREAM_URL: is required`},
		{[]string{"SSEGATE_UPSTREAM_URL=/api"}, `SSEGATE_UPSTREAM_URL: must be an absolute http or https URL, got "/api"`},
		{[]string{"SSEGATE_UPSTREAM_URL=ftp://x"}, `SSEGATE_UPSTREAM_URL: must be an absolute http or https URL, got "ftp://x"`},
		{[]string{"SSEGATE_UPSTREAM_URL=http://u:p@x"}, `SSEGATE_UPSTREAM_URL: must not carry credentials`},
		{[]string{"SSEGATE_UPSTREAM_URL=http://x/?a=1"}, `SSEGATE_UPSTREAM_URL: must not have a query`},
		{[]string{"SSEGATE_POLL_INTERVAL=5"}, `SSEGATE_POLL_INTERVAL: must be a duration such as 500ms, 2s or 1m, got "5"`},
		{[]string{"SSEGATE_POLL_INTERVAL=50ms"}, `SSEGATE_POLL_INTERVAL: must be at least 100ms, got "50ms"`},
		{[]string{"SSEGATE_H2C=maybe"}, `SSEGATE_H2C: must be true or false, got "maybe"`},
		{[]string{"SSEGATE_HISTORY_SIZE=lots"}, `SSEGATE_HISTORY_SIZE: must be a whole number, got "lots"`},
		{[]string{"SSEGATE_HISTORY_SIZE=0"}, `SSEGATE_HISTORY_SIZE: must be at least 1, got 0`},
		{[]string{"SSEGATE_CLIENT_BUFFER=0"}, `SSEGATE_CLIENT_BUFFER: must be at least 1, got 0`},
		{[]string{"SSEGATE_MAX_BODY_BYTES=0"}, `SSEGATE_MAX_BODY_BYTES: must be positive, got 0`},
		{[]string{"SSEGATE_TLS_CERT_FILE=c.pem"}, `SSEGATE_TLS_CERT_FILE: and SSEGATE_TLS_KEY_FILE must be set together`},
		{[]string{"SSEGATE_TLS_KEY_FILE=k.pem"}, `SSEGATE_TLS_CERT_FILE: and SSEGATE_TLS_KEY_FILE must be set together`},
		{[]string{"SSEGATE_H2C=true", "SSEGATE_TLS_CERT_FILE=c", "SSEGATE_TLS_KEY_FILE=k"}, `SSEGATE_H2C: serves cleartext`},
		{[]string{"SSEGATE_LISTEN_ADDR=8443"}, `SSEGATE_LISTEN_ADDR: must be host:port or :port, got "8443"`},
		{[]string{"SSEGATE_METRICS_ADDR=localhost"}, `SSEGATE_METRICS_ADDR: must be host:port or :port, got "localhost"`},
		{[]string{"SSEGATE_LOG_LEVEL=loud"}, `SSEGATE_LOG_LEVEL: must be debug, info, warn or error, got "loud"`},
		{[]string{"SSEGATE_LOG_FORMAT=xml"}, `SSEGATE_LOG_FORMAT: must be text or json, got "xml"`},
		{[]string{"SSEGATE_SHUTDOWN_TIMEOUT=0s"}, `SSEGATE_SHUTDOWN_TIMEOUT: must be positive, got "0s"`},
		{[]string{"SSEGATE_POLL_TIMEOUT=-1s"}, `SSEGATE_POLL_TIMEOUT: must be positive, got "-1s"`},
		{[]string{"SSEGATE_LINGER=0s"}, `SSEGATE_LINGER: must be positive`},
		{[]string{"SSEGATE_RETRY=0s"}, `SSEGATE_RETRY: must be positive`},
		{[]string{"SSEGATE_HEARTBEAT_INTERVAL=0s"}, `SSEGATE_HEARTBEAT_INTERVAL: must be positive`},
		{[]string{"SSEGATE_MAX_BACKOFF=1s"}, `SSEGATE_MAX_BACKOFF: must be at least SSEGATE_POLL_INTERVAL (2s), got "1s"`},
		{[]string{"SSEGATE_DIFF_MODE=json"}, `SSEGATE_DIFF_MODE: must be auto, items, patch or snapshot, got "json"`},
		{[]string{"SSEGATE_ITEMS_POINTER=items"}, `SSEGATE_ITEMS_POINTER: must be a JSON Pointer starting with /, got "items"`},
		{[]string{"SSEGATE_IDENTITY_HEADERS=Authorization,Bad Header"}, `SSEGATE_IDENTITY_HEADERS: must be comma-separated header names`},
		{[]string{"SSEGATE_STREAM_PATHS=/api/{bad"}, `SSEGATE_STREAM_PATHS: not an http.ServeMux pattern`},
		{[]string{"SSEGATE_MAX_CONNECTIONS=-1"}, `SSEGATE_MAX_CONNECTIONS: must be 0 (no cap) or positive, got -1`},
		{[]string{"SSEGATE_MAX_KEYS=-5"}, `SSEGATE_MAX_KEYS: must be 0 (no cap) or positive, got -5`},
		{[]string{"SSEGATE_UPSTREAM_MAX_RPS=-1"}, `SSEGATE_UPSTREAM_MAX_RPS: must be 0 (no cap) or positive`},
		{[]string{"SSEGATE_UPSTREAM_MAX_RPS=fast"}, `SSEGATE_UPSTREAM_MAX_RPS: must be a number, got "fast"`},
		{[]string{"SSEGATE_POLL_INTERVAL_MAX=1s"}, `SSEGATE_POLL_INTERVAL_MAX: must be at least SSEGATE_POLL_INTERVAL (2s), got "1s"`},
		{[]string{"SSEGATE_NUDGE_TOKEN=short"}, `SSEGATE_NUDGE_TOKEN: must be at least 16 characters`},
		{[]string{"SSEGATE_TRUSTED_PROXIES=10.0.0.0/8,lb.internal"}, `SSEGATE_TRUSTED_PROXIES: must be comma-separated CIDRs such as 10.0.0.0/8, got "lb.internal"`},
		{[]string{"SSEGATE_TRUSTED_PROXIES=10.0.0.0/33"}, `SSEGATE_TRUSTED_PROXIES: must be comma-separated CIDRs`},
		{[]string{"SSEGATE_KEY_BY_CLIENT_IP=yes"}, `SSEGATE_KEY_BY_CLIENT_IP: must be true or false, got "yes"`},
		{[]string{"SSEGATE_CORS_ORIGINS=app.example.com"}, `SSEGATE_CORS_ORIGINS: "app.example.com" must be an origin such as https://app.example.com`},
		{[]string{"SSEGATE_CORS_ORIGINS=https://app.example.com/path"}, `SSEGATE_CORS_ORIGINS: "https://app.example.com/path" must be an origin such as`},
		{[]string{"SSEGATE_CORS_ORIGINS=https://app.example.com/"}, `SSEGATE_CORS_ORIGINS: "https://app.example.com/" is not in the form browsers send (lower case, no default port, no trailing slash): use "https://app.example.com"`},
		{[]string{"SSEGATE_CORS_ORIGINS=https://App.Example.com:443"}, `use "https://app.example.com"`},
		{[]string{"SSEGATE_CORS_ORIGINS=ftp://x"}, `SSEGATE_CORS_ORIGINS: "ftp://x" must be an origin`},
		{[]string{"SSEGATE_CORS_ORIGINS=null"}, `SSEGATE_CORS_ORIGINS: "null" must be an origin`},
		{[]string{"SSEGATE_CORS_ORIGINS=https://*.example.com"}, `SSEGATE_CORS_ORIGINS: "https://*.example.com" has a wildcard`},
		{[]string{"SSEGATE_CORS_ORIGINS=*,https://a.example"}, `SSEGATE_CORS_ORIGINS: * allows every origin and must be alone`},
		{[]string{"SSEGATE_CORS_ORIGINS=https://u:p@a.example"}, `SSEGATE_CORS_ORIGINS: "https://u:p@a.example" must be an origin`},
	}
	for _, tt := range tests {
		_, err := load(t, tt.env...)
		if err == nil {
			t.Errorf("%v: no error, want %q", tt.env, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v:\n got %q\nwant it to contain %q", tt.env, err, tt.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: message spans lines: %q", tt.env, err)
		}
	}
}

func TestTrustedProxies(t *testing.T) {
	c, err := load(t, "SSEGATE_TRUSTED_PROXIES=10.1.2.3/8, 192.0.2.7 ,2001:db8::/32,")
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.TrustedProxyPrefixes()
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), // masked
		netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("2001:db8::/32"),
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %v, %v; want %v", got, err, want)
	}
}

func TestCORSOrigins(t *testing.T) {
	for _, v := range []string{"", "*", "https://app.example.com", "http://127.0.0.1:3000,https://app.example.com:8443,http://[::1]:8080"} {
		c, err := load(t, "SSEGATE_CORS_ORIGINS="+v)
		if err != nil {
			t.Errorf("CORS_ORIGINS=%q: %v, want valid", v, err)
			continue
		}
		if got := strings.Join(c.CORSOrigins, ","); got != v {
			t.Errorf("CORS_ORIGINS=%q: got %q", v, got)
		}
	}
}

func TestDemoNeedsNoUpstream(t *testing.T) {
	c, err := config.Load([]string{"SSEGATE_DEMO=true"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("demo without upstream: %v, want valid", err)
	}
}

func TestUsageListsEveryVariable(t *testing.T) {
	var buf bytes.Buffer
	if err := config.PrintUsage(&buf); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range config.Variables() {
		if !strings.Contains(buf.String(), v.Name) {
			t.Errorf("usage does not list %s", v.Name)
		}
		if v.Help == "" {
			t.Errorf("%s has no help text", v.Name)
		}
		if !strings.Contains(string(readme), "`"+v.Name+"`") {
			t.Errorf("README's configuration table does not list %s", v.Name)
		}
	}
}

func TestUnknownVariables(t *testing.T) {
	environ := []string{
		"SSEGATE_POLL_INTERVL=1s",
		"SSEGATE_POLL_INTERVAL=2s",
		"ssegate_log_level=debug",
		"SSEGATE_NUDGE_TOKN=do-not-echo-me",
		"SSEGATE_UPSTREAM_UR=http://x",
		"PATH=/usr/bin",
		"SSEGATEWAY=1",
		"SSEGATE_HISTORY_SIZ", // no "=": still a name
	}
	for _, v := range config.Variables() {
		environ = append(environ, v.Name+"=x") // every known name is known
	}
	want := []config.Unknown{
		{"SSEGATE_HISTORY_SIZ", "SSEGATE_HISTORY_SIZE"},
		{"SSEGATE_NUDGE_TOKN", "SSEGATE_NUDGE_TOKEN"},
		{"SSEGATE_POLL_INTERVL", "SSEGATE_POLL_INTERVAL"},
		{"SSEGATE_UPSTREAM_UR", "SSEGATE_UPSTREAM_URL"},
		{"ssegate_log_level", "SSEGATE_LOG_LEVEL"},
	}
	got := config.UnknownVariables(environ)
	if !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	for _, u := range got {
		if strings.Contains(u.String(), "do-not-echo-me") {
			t.Errorf("%q shows a value", u)
		}
	}
	if s := want[2].String(); s != "SSEGATE_POLL_INTERVL is not a known variable (closest: SSEGATE_POLL_INTERVAL)" {
		t.Errorf("String() = %q", s)
	}
}

// readmeTable returns the README configuration table's meaning column by
// variable name, without the Markdown backticks.
func readmeTable(t *testing.T) map[string]string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(readme), "\n") {
		if !strings.HasPrefix(line, "| `"+config.Prefix) {
			continue
		}
		cells := strings.Split(line, "|") // "", name, default, meaning, ""
		if len(cells) != 5 {
			t.Fatalf("README row %q: want | name | default | meaning |", line)
		}
		name := strings.Trim(cells[1], " `")
		rows[name] = strings.ReplaceAll(strings.TrimSpace(cells[3]), "`", "")
	}
	return rows
}

// TestIntervalsDescribedAlike: -h and the README say the same about the
// poll intervals, and that POLL_INTERVAL is the shortest, not the usual, one
// (quiet keys are polled up to POLL_INTERVAL_MAX apart).
func TestIntervalsDescribedAlike(t *testing.T) {
	rows := readmeTable(t)
	for _, v := range config.Variables() {
		switch v.Name {
		case "SSEGATE_POLL_INTERVAL", "SSEGATE_POLL_INTERVAL_MAX":
		default:
			continue
		}
		if rows[v.Name] != v.Help {
			t.Errorf("%s:\n  -h:     %s\n  README: %s", v.Name, v.Help, rows[v.Name])
		}
		if v.Name == "SSEGATE_POLL_INTERVAL" && (!strings.HasPrefix(v.Help, "shortest ") || !strings.Contains(v.Help, "SSEGATE_POLL_INTERVAL_MAX")) {
			t.Errorf("%s: %q, want it described as the shortest interval, naming SSEGATE_POLL_INTERVAL_MAX", v.Name, v.Help)
		}
	}
}
