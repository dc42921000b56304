package config_test

import (
	"bytes"
	"os"
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
