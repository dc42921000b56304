// Package nudgeapi is the nudge endpoint's wire format and the client a
// backend (or a tool) sends nudges with. It imports neither the hub nor
// the endpoint, so that a sender builds without the gateway.
package nudgeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Path is where a backend tells the gateway that something changed.
const Path = "/.well-known/ssegate/nudge"

// Message is the body of a nudge: JSON, or the same names as form values.
type Message struct {
	// Path is an http.ServeMux pattern matched against the paths clients
	// stream, e.g. "/api/notifications" or "/feeds/". Required.
	Path string `json:"path"`
	// Identity, when set, limits the nudge to keys one of whose identity
	// headers has exactly this value (e.g. "Bearer alice-token").
	Identity string `json:"identity,omitempty"`
}

// Send posts m to the nudge endpoint at url with the bearer token, as
// a backend does after it writes; it succeeds on 202 Accepted.
func Send(ctx context.Context, c *http.Client, url, token string, m Message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("nudge: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512)) // for the error, and to reuse the connection
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("nudge: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}
