// Package certs provides the gateway's TLS certificate: an operator's PEM pair
// that is reloaded when renewed on disk, or a self-signed pair generated once
// and reused so that a developer trusts it only once.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Names of the generated files inside the certificate directory.
const (
	GeneratedCertName = "ssegate-cert.pem"
	GeneratedKeyName  = "ssegate-key.pem"
)

// generatedValidity is how long a generated certificate is valid; it is
// regenerated when less than renewBefore remains.
const (
	generatedValidity = 397 * 24 * time.Hour // the longest browsers accept for leaf certificates
	renewBefore       = 7 * 24 * time.Hour
)

// TLSConfig returns the server TLS configuration: TLS 1.2 or newer, ALPN h2
// then http/1.1, certificates from get.
func TLSConfig(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: get,
	}
}

// Fingerprint is the SHA-256 of the leaf certificate's DER bytes, as hex
// pairs separated by colons (what browsers show).
func Fingerprint(c *tls.Certificate) string {
	if len(c.Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(c.Certificate[0])
	h := hex.EncodeToString(sum[:])
	out := make([]byte, 0, len(h)*3/2)
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, h[i], h[i+1])
	}
	return string(out)
}

// Reloader serves a certificate pair from files and picks up a renewed pair
// without a restart. It checks the files' modification times at most once per
// CheckEvery, on the handshake path, so it needs no goroutine of its own.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	// CheckEvery is the least time between two looks at the files. Default 1s.
	CheckEvery time.Duration

	mu        sync.Mutex
	cert      *tls.Certificate
	certMod   time.Time
	keyMod    time.Time
	lastCheck time.Time
}

// NewReloader loads the pair once; an error here is fatal for the caller.
func NewReloader(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log, now: time.Now, CheckEvery: time.Second}
	cert, cm, km, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cert, r.certMod, r.keyMod, r.lastCheck = cert, cm, km, r.now()
	return r, nil
}

func (r *Reloader) load() (*tls.Certificate, time.Time, time.Time, error) {
	ci, err := os.Stat(r.certFile)
	if err != nil {
		return nil, time.Time{}, time.Time{}, fmt.Errorf("TLS certificate: %w", err)
	}
	ki, err := os.Stat(r.keyFile)
	if err != nil {
		return nil, time.Time{}, time.Time{}, fmt.Errorf("TLS key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, time.Time{}, time.Time{}, fmt.Errorf("TLS pair %s, %s: %w", r.certFile, r.keyFile, err)
	}
	return &cert, ci.ModTime(), ki.ModTime(), nil
}

// Certificate returns the pair currently served.
func (r *Reloader) Certificate() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.lastCheck) < r.CheckEvery {
		return r.cert, nil
	}
	r.lastCheck = now
	ci, err1 := os.Stat(r.certFile)
	ki, err2 := os.Stat(r.keyFile)
	if err1 != nil || err2 != nil {
		// A renewal in progress (files replaced one by one) or a mistake;
		// either way the old pair is still good.
		return r.cert, nil
	}
	if ci.ModTime().Equal(r.certMod) && ki.ModTime().Equal(r.keyMod) {
		return r.cert, nil
	}
	cert, cm, km, err := r.load()
	if err != nil {
		r.log.Error("renewed TLS pair is not usable; still serving the previous one", "err", err)
		// Remember the broken versions so the error is logged once, not per handshake.
		r.certMod, r.keyMod = ci.ModTime(), ki.ModTime()
		return r.cert, nil
	}
	r.cert, r.certMod, r.keyMod = cert, cm, km
	r.log.Info("reloaded TLS certificate", "path", r.certFile, "sha256", Fingerprint(cert))
	return r.cert, nil
}

// EnsureSelfSigned returns the self-signed pair in dir covering hosts,
// creating it (key file mode 0600) when it is missing, expiring, unreadable or
// does not cover every host. created tells whether a new pair was written.
func EnsureSelfSigned(dir string, hosts []string, now time.Time) (cert *tls.Certificate, certPath string, created bool, err error) {
	if len(hosts) == 0 {
		return nil, "", false, ErrNoHosts
	}
	certPath = filepath.Join(dir, GeneratedCertName)
	keyPath := filepath.Join(dir, GeneratedKeyName)
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && covers(c.Leaf, hosts, now) {
		return &c, certPath, false, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", false, fmt.Errorf("certificate directory: %w", err)
	}
	certPEM, keyPEM, err := generate(hosts, now)
	if err != nil {
		return nil, "", false, err
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, "", false, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, "", false, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, "", false, fmt.Errorf("generated pair: %w", err)
	}
	return &c, certPath, true, nil
}

func covers(leaf *x509.Certificate, hosts []string, now time.Time) bool {
	if leaf == nil || now.Add(renewBefore).After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return false
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(leaf.DNSNames, h) {
			return false
		}
	}
	return true
}

func generate(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"ssegate self-signed"}, CommonName: hosts[0]},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(generatedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // so it can be trusted directly as its own root
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// writeFileAtomic writes through a temporary file and a rename, so a crash
// never leaves half a key behind.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ErrNoHosts is returned when a certificate would cover no host.
var ErrNoHosts = errors.New("no hosts for the certificate")

// Static serves one fixed certificate.
type Static struct{ Cert *tls.Certificate }

// GetCertificate is for tls.Config.GetCertificate.
func (s Static) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.Cert, nil }
