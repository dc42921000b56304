package app_test

import (
	"go/build"
	"path/filepath"
	"slices"
	"testing"
)

// TestLayers: the library's arrows point one way (proxy → stream ← poller,
// fleet implementing poller's seam), none of it reads the environment's
// configuration, and the HTTP front routes no other package's endpoint:
// app composes the listeners.
func TestLayers(t *testing.T) {
	const module = "github.com/ssegate/ssegate/"
	forbidden := map[string][]string{
		"stream": {"poller", "proxy", "nudge", "fleet", "config", "internal/app"},
		"poller": {"proxy", "nudge", "fleet", "config", "internal/app"},
		"proxy":  {"poller", "nudge", "fleet", "config", "internal/app"},
		"nudge":  {"proxy", "poller", "fleet", "config", "internal/app"},
		"fleet":  {"proxy", "nudge", "config", "internal/app"},
	}
	for pkg, deny := range forbidden {
		p, err := build.ImportDir(filepath.Join("..", "..", pkg), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range deny {
			if slices.Contains(p.Imports, module+d) {
				t.Errorf("%s imports %s", pkg, d)
			}
		}
	}
}
