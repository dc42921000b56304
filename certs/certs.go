// Package certs provides the gateway's TLS certificate: an operator's PEM pair
// that is reloaded when renewed on disk, or a self-signed pair generated once
// and reused so that a developer trusts it only once.
package certs

import (
	"context"
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
	"io"
	"io/fs"
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
// without a restart. At most once per CheckEvery, on the handshake path (so it
// needs no goroutine of its own), it reads both files and compares their
// SHA-256 with the pair it last looked at: contents, not modification times,
// so a pair rewritten within one tick of the file system's clock, or copied
// with its old times preserved, is still picked up.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	// CheckEvery is the least time between two looks at the files. Default 1s.
	CheckEvery time.Duration

	mu        sync.Mutex
	cert      *tls.Certificate
	sum       [sha256.Size]byte // of the files last looked at, served or refused
	lastCheck time.Time
}

// maxPEMBytes bounds each file read: a certificate chain is a few KiB.
const maxPEMBytes = 1 << 20

// Errors for a pair outside its validity period (RFC 5280 §4.1.2.5).
var (
	ErrExpired     = errors.New("certificate has expired")
	ErrNotYetValid = errors.New("certificate is not valid yet")
)

// NewReloader loads the pair once; an error here (unreadable, unusable,
// expired or not yet valid) is fatal for the caller.
func NewReloader(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log, now: time.Now, CheckEvery: time.Second}
	certPEM, keyPEM, sum, err := r.read()
	if err != nil {
		return nil, err
	}
	now := r.now()
	cert, err := r.parse(certPEM, keyPEM, now)
	if err != nil {
		return nil, err
	}
	r.cert, r.sum, r.lastCheck = cert, sum, now
	return r, nil
}

// read returns both files and the SHA-256 of their contents.
func (r *Reloader) read() (certPEM, keyPEM []byte, sum [sha256.Size]byte, err error) {
	if certPEM, err = readBounded(r.certFile); err != nil {
		return nil, nil, sum, fmt.Errorf("TLS certificate: %w", err)
	}
	if keyPEM, err = readBounded(r.keyFile); err != nil {
		return nil, nil, sum, fmt.Errorf("TLS key: %w", err)
	}
	h := sha256.New()
	// The length first, so bytes moved from one file to the other still differ.
	fmt.Fprintf(h, "%d\n", len(certPEM))
	h.Write(certPEM)
	h.Write(keyPEM)
	h.Sum(sum[:0])
	return certPEM, keyPEM, sum, nil
}

// parse checks the pair and its validity period at now.
func (r *Reloader) parse(certPEM, keyPEM []byte, now time.Time) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err == nil {
		err = checkValidity(&cert, now)
	}
	if err != nil {
		return nil, fmt.Errorf("TLS pair %s, %s: %w", r.certFile, r.keyFile, err)
	}
	return &cert, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPEMBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxPEMBytes)
	}
	return b, nil
}

// checkValidity refuses a leaf outside its validity period: browsers refuse
// it anyway, and serving it would hide the mistake until clients fail.
func checkValidity(c *tls.Certificate, now time.Time) error {
	leaf := c.Leaf
	if leaf == nil { // X509KeyPair fills it unless GODEBUG x509keypairleaf=0
		if len(c.Certificate) == 0 {
			return errors.New("no certificate")
		}
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return err
		}
		c.Leaf = leaf
	}
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Errorf("%w: valid until %s", ErrExpired, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("%w: valid from %s", ErrNotYetValid, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
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
	certPEM, keyPEM, sum, err := r.read()
	if err != nil {
		// A renewal in progress (files replaced one by one) or a mistake;
		// either way the old pair is still good.
		return r.cert, nil
	}
	if sum == r.sum {
		return r.cert, nil
	}
	// Remember the new contents whatever comes of them, so a refused pair is
	// logged once, not per handshake.
	r.sum = sum
	cert, err := r.parse(certPEM, keyPEM, now)
	if err != nil {
		r.log.Error("renewed TLS pair is not usable; still serving the previous one", "err", err)
		return r.cert, nil
	}
	r.cert = cert
	r.log.Info("reloaded TLS certificate", "path", r.certFile, "sha256", Fingerprint(cert))
	return r.cert, nil
}

// EnsureSelfSigned returns the self-signed pair in dir covering hosts,
// creating it (key file mode 0600) when it is missing, expiring, not yet
// valid, unreadable or does not cover every host. created tells whether a
// new pair was written; why an existing pair was replaced goes to log (nil:
// not logged), one line.
func EnsureSelfSigned(dir string, hosts []string, now time.Time, log *slog.Logger) (cert *tls.Certificate, certPath string, created bool, err error) {
	if len(hosts) == 0 {
		return nil, "", false, ErrNoHosts
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	certPath = filepath.Join(dir, GeneratedCertName)
	keyPath := filepath.Join(dir, GeneratedKeyName)
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// first start: nothing to replace
	case err != nil:
		log.Warn("self-signed TLS pair is not usable; generating a new one", "path", certPath, "err", err)
	default:
		reason := reuse(&c, hosts, now)
		if reason == nil {
			return &c, certPath, false, nil
		}
		level := slog.LevelInfo // a renewal or a new host is routine
		if errors.Is(reason, ErrExpired) || errors.Is(reason, ErrNotYetValid) {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "not reusing the self-signed TLS certificate; generating a new one", "path", certPath, "reason", reason)
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
	c, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, "", false, fmt.Errorf("generated pair: %w", err)
	}
	return &c, certPath, true, nil
}

// reuse tells why a generated pair must be replaced, or nil when it can be
// served: valid now and for renewBefore more, covering every host.
func reuse(c *tls.Certificate, hosts []string, now time.Time) error {
	if err := checkValidity(c, now); err != nil {
		return err
	}
	if now.Add(renewBefore).After(c.Leaf.NotAfter) {
		return fmt.Errorf("expires within %s, on %s", renewBefore, c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(c.Leaf.IPAddresses, ip.Equal) {
				return fmt.Errorf("does not cover %s", h)
			}
		} else if !slices.Contains(c.Leaf.DNSNames, h) {
			return fmt.Errorf("does not cover %s", h)
		}
	}
	return nil
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
