// Package nudge is the nudge endpoint, by which a backend tells the gateway
// that something changed so that matching keys are polled at once. Its
// path, its body and the client that sends one are nudgeapi's.
package nudge

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/ssegate/ssegate/nudge/nudgeapi"
	"github.com/ssegate/ssegate/stream"
)

// maxBody bounds a nudge request's body.
const maxBody = 64 << 10

// Handler triggers an immediate poll of every key that matches a
// nudge; the polls still wait for the upstream budget. It requires
// "Authorization: Bearer <token>" (the scheme in any case).
type Handler struct {
	hub   *stream.Hub
	keyer *stream.Keyer
	token []byte
	log   *slog.Logger

	// Relay, when set before serving, carries each nudge to the other
	// replicas of a fleet, whose keys it matches too (see Receive): the
	// replica that polls a key may not be the one the backend reached.
	Relay Relay
}

// Relay carries a nudge to the other replicas (fleet.Engine is one).
type Relay interface {
	PublishNudge(ctx context.Context, payload []byte) error
}

// relayed is a nudge as it travels between replicas: the identity only as
// its keyed hash, never the credential a backend named it by.
type relayed struct {
	Path        string `json:"path"`
	IdentityMAC []byte `json:"identity_mac,omitempty"`
}

// Receive applies a nudge another replica relayed: it signals the matching
// keys of hub and returns how many. A malformed payload matches nothing.
func Receive(hub *stream.Hub, keyer *stream.Keyer, payload []byte) int {
	var m relayed
	if err := json.Unmarshal(payload, &m); err != nil || m.Path == "" {
		return 0
	}
	mux, err := patternMux(m.Path)
	if err != nil {
		return 0
	}
	return hub.Nudge(func(t stream.Target) bool {
		if m.IdentityMAC != nil && !keyer.HasIdentityMAC(t, m.IdentityMAC) {
			return false
		}
		return matchesPath(mux, t)
	})
}

func matchesPath(mux *http.ServeMux, t stream.Target) bool {
	_, pattern := mux.Handler(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: t.Path}})
	return pattern != ""
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns the nudge endpoint; token must not be empty.
func NewHandler(hub *stream.Hub, keyer *stream.Keyer, token string, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{hub: hub, keyer: keyer, token: []byte(token), log: log}
}

func (n *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "ssegate: nudge: use POST", http.StatusMethodNotAllowed)
		return
	}
	// The scheme is case-insensitive (RFC 9110 §11.1), and one or more
	// spaces separate it from the credentials (§11.4).
	scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	got = strings.TrimLeft(got, " ")
	if !strings.EqualFold(scheme, "Bearer") || len(n.token) == 0 || subtle.ConstantTimeCompare([]byte(got), n.token) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ssegate"`)
		http.Error(w, "ssegate: nudge: missing or wrong bearer token", http.StatusUnauthorized)
		return
	}
	nd, err := readNudge(r)
	if err != nil {
		http.Error(w, "ssegate: nudge: "+err.Error(), http.StatusBadRequest)
		return
	}
	if nd.Path == "" {
		http.Error(w, `ssegate: nudge: no path; send a JSON body such as {"path":"/api/"}`, http.StatusBadRequest)
		return
	}
	mux, err := patternMux(nd.Path)
	if err != nil {
		http.Error(w, fmt.Sprintf("ssegate: nudge: path must be an http.ServeMux pattern, got %q", nd.Path), http.StatusBadRequest)
		return
	}
	matched := n.hub.Nudge(func(t stream.Target) bool {
		if nd.Identity != "" && !n.keyer.HasIdentity(t, nd.Identity) {
			return false
		}
		return matchesPath(mux, t)
	})
	if n.Relay != nil {
		m := relayed{Path: nd.Path}
		if nd.Identity != "" {
			m.IdentityMAC = n.keyer.IdentityMAC(nd.Identity)
		}
		payload, _ := json.Marshal(m) // a struct of a string and bytes: never fails
		if err := n.Relay.PublishNudge(r.Context(), payload); err != nil {
			// The keys this replica polls are nudged; the others are
			// polled on their interval.
			n.log.Warn("nudge: relaying to the fleet failed", "err", err)
		}
	}
	n.log.Debug("nudge", "path", nd.Path, "with_identity", nd.Identity != "", "keys", matched)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = fmt.Fprintf(w, "{\"keys\":%d}\n", matched) // the nudge took effect either way
}

// patternMux returns a mux that matches the one pattern.
func patternMux(pattern string) (mux *http.ServeMux, err error) {
	defer func() {
		if r := recover(); r != nil { // ServeMux panics on a bad pattern
			err = fmt.Errorf("%v", r)
		}
	}()
	mux = http.NewServeMux()
	mux.Handle(pattern, http.NotFoundHandler()) // only matched, never served
	return mux, nil
}

// readNudge takes a JSON body whatever its Content-Type (curl -d labels
// everything application/x-www-form-urlencoded), else form values.
func readNudge(r *http.Request) (nudgeapi.Message, error) {
	var nd nudgeapi.Message
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		return nd, fmt.Errorf("body: %w", err)
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/json" || bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		if err := json.Unmarshal(body, &nd); err != nil {
			return nd, fmt.Errorf("body is not a JSON nudge: %w", err)
		}
		return nd, nil
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err := r.ParseForm(); err != nil {
		return nd, err
	}
	return nudgeapi.Message{Path: r.Form.Get("path"), Identity: r.Form.Get("identity")}, nil
}
