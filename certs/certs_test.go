package certs_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssegate/ssegate/certs"
)

var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func TestSelfSignedIsCreatedThenReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "certs")
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	c1, path, created, err := certs.EnsureSelfSigned(dir, hosts, now, nil)
	if err != nil || !created {
		t.Fatalf("first start: created %v, err %v; want a new pair", created, err)
	}
	if path != filepath.Join(dir, certs.GeneratedCertName) {
		t.Errorf("path %s, want in %s", path, dir)
	}
	fi, err := os.Stat(filepath.Join(dir, certs.GeneratedKeyName))
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("key mode %o, want 600", mode)
	}
	leaf := c1.Leaf
	if leaf.PublicKeyAlgorithm.String() != "ECDSA" {
		t.Errorf("key algorithm %s, want ECDSA", leaf.PublicKeyAlgorithm)
	}
	if err := leaf.VerifyHostname("localhost"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("::1"); err != nil {
		t.Error(err)
	}

	c2, _, created, err := certs.EnsureSelfSigned(dir, hosts, now.Add(24*time.Hour), nil)
	if err != nil || created {
		t.Fatalf("second start: created %v, err %v; want the same pair reused", created, err)
	}
	if certs.Fingerprint(c1) != certs.Fingerprint(c2) {
		t.Error("second start served a different certificate")
	}

	// A new host, or an expiring certificate, means a new pair.
	_, _, created, _ = certs.EnsureSelfSigned(dir, append(hosts, "gateway.test"), now, nil)
	if !created {
		t.Error("new host: reused a certificate that does not cover it")
	}
	_, _, created, _ = certs.EnsureSelfSigned(dir, append(hosts, "gateway.test"), now.Add(396*24*time.Hour), nil)
	if !created {
		t.Error("near expiry: reused an expiring certificate")
	}
}

func TestFingerprintFormat(t *testing.T) {
	c, _, _, err := certs.EnsureSelfSigned(t.TempDir(), []string{"localhost"}, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	fp := certs.Fingerprint(c)
	if len(fp) != 32*3-1 || strings.Count(fp, ":") != 31 {
		t.Errorf("fingerprint %q, want 32 colon-separated hex pairs", fp)
	}
}

// writePair writes a fresh self-signed pair for host, issued at issued
// (valid from an hour before it for 397 days), to certFile/keyFile with
// modification time mtime.
func writePair(t *testing.T, host string, issued time.Time, certFile, keyFile string, mtime time.Time) {
	t.Helper()
	dir := t.TempDir()
	if _, _, _, err := certs.EnsureSelfSigned(dir, []string{host}, issued, nil); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{certs.GeneratedCertName: certFile, certs.GeneratedKeyName: keyFile} {
		b, err := os.ReadFile(filepath.Join(dir, src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(dst, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// The Reloader checks validity against the real clock.
var (
	valid   = time.Now()
	expired = time.Now().Add(-2 * 365 * 24 * time.Hour)
	future  = time.Now().Add(365 * 24 * time.Hour)
)

// newReloader starts a Reloader on a valid pair for old.test that checks the
// files on every handshake; get returns the name the served pair covers.
func newReloader(t *testing.T) (certFile, keyFile string, logs *bytes.Buffer, get func() string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writePair(t, "old.test", valid, certFile, keyFile, now)
	logs = new(bytes.Buffer)
	r, err := certs.NewReloader(certFile, keyFile, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r.CheckEvery = 0
	get = func() string {
		t.Helper()
		c, err := r.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.DNSNames[0]
	}
	if got := get(); got != "old.test" {
		t.Fatalf("serving %s, want old.test", got)
	}
	return certFile, keyFile, logs, get
}

func TestReloaderPicksUpRenewedPair(t *testing.T) {
	certFile, keyFile, logs, get := newReloader(t)
	writePair(t, "new.test", valid, certFile, keyFile, now.Add(time.Hour))
	if got := get(); got != "new.test" {
		t.Errorf("after renewal serving %s, want new.test", got)
	}

	// A broken renewal keeps the previous pair and says why, once.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(keyFile, now.Add(2*time.Hour), now.Add(2*time.Hour))
	for range 3 {
		if got := get(); got != "new.test" {
			t.Errorf("after broken renewal serving %s, want new.test", got)
		}
	}
	if n := strings.Count(logs.String(), "not usable"); n != 1 {
		t.Errorf("logged the broken pair %d times, want once:\n%s", n, logs.String())
	}
}

// TestReloaderPicksUpRewriteWithSameTime: a renewal written within the same
// tick of the file system's clock (or copied with its times preserved)
// leaves the modification times as they were; the contents still differ.
func TestReloaderPicksUpRewriteWithSameTime(t *testing.T) {
	certFile, keyFile, logs, get := newReloader(t)
	writePair(t, "new.test", valid, certFile, keyFile, now) // the same mtime as the first pair
	if got := get(); got != "new.test" {
		t.Errorf("after a renewal with unchanged times serving %s, want new.test", got)
	}
	if n := strings.Count(logs.String(), "reloaded TLS certificate"); n != 1 {
		t.Errorf("logged %d reloads, want 1:\n%s", n, logs)
	}
	// Touching the files without changing them is not a renewal.
	os.Chtimes(certFile, now.Add(time.Hour), now.Add(time.Hour))
	get()
	if n := strings.Count(logs.String(), "reloaded TLS certificate"); n != 1 {
		t.Errorf("a touch reloaded: %d reloads, want 1:\n%s", n, logs)
	}
}

// TestReloaderRefusesPairOutsideValidity: an expired or not yet valid
// renewal keeps the previous pair, and is logged once.
func TestReloaderRefusesPairOutsideValidity(t *testing.T) {
	for _, tt := range []struct {
		name   string
		issued time.Time
		want   string
	}{{"expired", expired, "certificate has expired"}, {"not yet valid", future, "certificate is not valid yet"}} {
		t.Run(tt.name, func(t *testing.T) {
			certFile, keyFile, logs, get := newReloader(t)
			writePair(t, "new.test", tt.issued, certFile, keyFile, now.Add(time.Hour))
			for range 3 {
				if got := get(); got != "old.test" {
					t.Errorf("after a renewal %s serving %s, want old.test", tt.name, got)
				}
			}
			if n := strings.Count(logs.String(), "not usable"); n != 1 || !strings.Contains(logs.String(), tt.want) {
				t.Errorf("want one line saying %q, got:\n%s", tt.want, logs)
			}
			// A valid renewal after it is served.
			writePair(t, "newer.test", valid, certFile, keyFile, now.Add(2*time.Hour))
			if got := get(); got != "newer.test" {
				t.Errorf("after a valid renewal serving %s, want newer.test", got)
			}
		})
	}
}

func TestReloaderRejectsBadPairAtStart(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if _, err := certs.NewReloader(certFile, keyFile, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("missing files: no error")
	}
	writePair(t, "x.test", valid, certFile, keyFile, now)
	os.WriteFile(keyFile, []byte("garbage"), 0o600)
	if _, err := certs.NewReloader(certFile, keyFile, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("unusable key: no error")
	}
	writePair(t, "x.test", expired, certFile, keyFile, now)
	if _, err := certs.NewReloader(certFile, keyFile, slog.New(slog.DiscardHandler)); !errors.Is(err, certs.ErrExpired) {
		t.Errorf("expired pair: got %v, want ErrExpired", err)
	} else {
		t.Logf("expired pair: %v", err)
	}
	writePair(t, "x.test", future, certFile, keyFile, now)
	if _, err := certs.NewReloader(certFile, keyFile, slog.New(slog.DiscardHandler)); !errors.Is(err, certs.ErrNotYetValid) {
		t.Errorf("pair not yet valid: got %v, want ErrNotYetValid", err)
	}
}

// TestSelfSignedOutsideValidityIsReplaced: a generated pair found expired or
// not yet valid (the clock moved) is regenerated, with one log line; a good
// one is reused without any.
func TestSelfSignedOutsideValidityIsReplaced(t *testing.T) {
	hosts := []string{"localhost"}
	for _, tt := range []struct {
		name   string
		issued time.Time
		want   string
	}{{"expired", expired, "certificate has expired"}, {"not yet valid", future, "certificate is not valid yet"}} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, _, _, err := certs.EnsureSelfSigned(dir, hosts, tt.issued, nil); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			c, _, created, err := certs.EnsureSelfSigned(dir, hosts, valid, log)
			if err != nil || !created {
				t.Fatalf("created %v, err %v; want a new pair", created, err)
			}
			if valid.Before(c.Leaf.NotBefore) || valid.After(c.Leaf.NotAfter) {
				t.Errorf("new pair valid %s to %s, want now inside", c.Leaf.NotBefore, c.Leaf.NotAfter)
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], tt.want) {
				t.Errorf("want one WARN line saying %q, got:\n%s", tt.want, logs.String())
			}
			logs.Reset()
			if _, _, created, _ := certs.EnsureSelfSigned(dir, hosts, valid, log); created || logs.Len() != 0 {
				t.Errorf("valid pair: created %v, logged %q; want it reused silently", created, logs.String())
			}
		})
	}
}

// TestTLSConfigNegotiatesH2 checks the server side of ALPN and the version floor.
func TestTLSConfigNegotiatesH2(t *testing.T) {
	c, _, _, err := certs.EnsureSelfSigned(t.TempDir(), []string{"localhost"}, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	conf := certs.TLSConfig(certs.Static{Cert: c}.GetCertificate)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				conn.(*tls.Conn).Handshake()
				io.Copy(io.Discard, conn)
				conn.Close()
			}()
		}
	}()
	dial := func(cc *tls.Config) (*tls.Conn, error) {
		cc.InsecureSkipVerify = true
		return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cc)
	}
	conn, err := dial(&tls.Config{NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Errorf("negotiated %q, want h2", p)
	}
	conn.Close()
	if conn, err := dial(&tls.Config{MaxVersion: tls.VersionTLS11}); err == nil {
		conn.Close()
		t.Error("TLS 1.1 handshake succeeded, want TLS 1.2 minimum")
	}
}
