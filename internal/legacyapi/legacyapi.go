// Package legacyapi is an example of the kind of API ssegate is put in
// front of: GET /api/notifications returns the signed-in user's
// notifications as a JSON array, newest first, with an ETag. The demo, the
// end-to-end tests and the benchmark use it as their upstream.
package legacyapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// API is an http.Handler serving per-user notification lists.
type API struct {
	// DefaultUser answers requests that carry no identity; "" answers them 401.
	DefaultUser string

	mu      sync.Mutex
	users   map[string]*list
	polls   map[string]int
	revoked map[string]bool
	status  int // forced status for every list request; 0: none
}

type list struct {
	items   []json.RawMessage // newest first
	version int
	body    []byte // encoded items; nil when stale
}

// New returns an API with no users.
func New() *API {
	return &API{users: map[string]*list{}, polls: map[string]int{}, revoked: map[string]bool{}}
}

// Path is where the notification list is served.
const Path = "/api/notifications"

// User returns the identity of r: "Authorization: Bearer <user>", else the
// cookie "user", else DefaultUser.
func (a *API) User(r *http.Request) string {
	if u, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && u != "" {
		return u
	}
	if c, err := r.Cookie("user"); err == nil && c.Value != "" {
		return c.Value
	}
	return a.DefaultUser
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != Path {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	user := a.User(r)
	a.mu.Lock()
	a.polls[user]++
	status, l, revoked := a.status, a.users[user], a.revoked[user]
	var body []byte
	var etag string
	if l != nil {
		body, etag = l.encode(), strconv.Quote(fmt.Sprintf("%s-%d", user, l.version))
	}
	a.mu.Unlock()

	w.Header().Set("Cache-Control", "no-cache")
	switch {
	case status != 0:
		http.Error(w, http.StatusText(status), status)
		return
	case l == nil || revoked:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"unknown user"}`))
		return
	}
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

func (l *list) encode() []byte {
	if l.body == nil {
		var b bytes.Buffer
		b.WriteByte('[')
		for i, it := range l.items {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(it)
		}
		b.WriteByte(']')
		l.body = b.Bytes()
	}
	return l.body
}

func (a *API) list(user string) *list {
	l := a.users[user]
	if l == nil {
		l = &list{items: []json.RawMessage{}}
		a.users[user] = l
	}
	return l
}

func (l *list) changed() { l.version++; l.body = nil }

// idOf returns the compact JSON of item's "id".
func idOf(item string) string {
	var v struct{ ID json.RawMessage }
	if err := json.Unmarshal([]byte(item), &v); err != nil {
		panic(fmt.Sprintf("legacyapi: item %s: %v", item, err))
	}
	return string(v.ID)
}

// AddUser makes user known with an empty list.
func (a *API) AddUser(user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.list(user)
}

// Add puts item (a JSON object with an "id") at the top of user's list.
func (a *API) Add(user, item string) {
	idOf(item)
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.list(user)
	l.items = append([]json.RawMessage{json.RawMessage(item)}, l.items...)
	l.changed()
}

// Update replaces the item with item's id.
func (a *API) Update(user, item string) bool {
	id := idOf(item)
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.list(user)
	for i, it := range l.items {
		if idOf(string(it)) == id {
			l.items[i] = json.RawMessage(item)
			l.changed()
			return true
		}
	}
	return false
}

// Delete removes the item whose id is the JSON value id (1, or "x" quoted).
func (a *API) Delete(user, id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.list(user)
	for i, it := range l.items {
		if idOf(string(it)) == id {
			l.items = append(l.items[:i:i], l.items[i+1:]...)
			l.changed()
			return true
		}
	}
	return false
}

// Items returns a copy of user's list, newest first.
func (a *API) Items(user string) []json.RawMessage {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]json.RawMessage(nil), a.list(user).items...)
}

// Revoke makes user's requests answer 401 from now on.
func (a *API) Revoke(user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revoked[user] = true
}

// SetStatus forces every list request to answer status; 0 restores normal answers.
func (a *API) SetStatus(status int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status = status
}

// Polls is how many list requests user made.
func (a *API) Polls(user string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.polls[user]
}

// TotalPolls is how many list requests were made in all.
func (a *API) TotalPolls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, p := range a.polls {
		n += p
	}
	return n
}
