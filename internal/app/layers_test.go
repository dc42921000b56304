package app_test

import (
	"go/build"
	"path/filepath"
	"strings"
	"testing"
)

// TestLayers: the library's arrows point one way (proxy → stream ← poller,
// fleet implementing poller's seam), none of it reads the environment's
// configuration, and the HTTP front routes no other package's endpoint:
// app composes the listeners. The load generator and a nudge's sender
// measure the gateway from outside: they build without its hub or front.
// Imports are followed through the module's packages, so that a helper
// cannot carry a forbidden one in.
func TestLayers(t *testing.T) {
	const module = "github.com/ssegate/ssegate/"
	forbidden := map[string][]string{
		"stream":         {"poller", "proxy", "nudge", "fleet", "config", "internal/app"},
		"poller":         {"proxy", "nudge", "fleet", "config", "internal/app"},
		"proxy":          {"poller", "nudge", "fleet", "config", "internal/app"},
		"nudge":          {"proxy", "poller", "fleet", "config", "internal/app"},
		"nudge/nudgeapi": {"stream", "proxy", "poller", "fleet", "nudge", "config", "internal/app"},
		"fleet":          {"proxy", "nudge", "config", "internal/app"},
		"cmd/ssebench":   {"stream", "proxy"},
		"internal/bench": {"stream", "proxy"},
	}
	imports := map[string][]string{} // module package → the module packages it imports
	var deps func(pkg string) []string
	deps = func(pkg string) []string {
		if d, ok := imports[pkg]; ok {
			return d
		}
		p, err := build.ImportDir(filepath.Join("..", "..", filepath.FromSlash(pkg)), 0)
		if err != nil {
			t.Fatal(err)
		}
		var d []string
		for _, imp := range p.Imports {
			if rel, ok := strings.CutPrefix(imp, module); ok {
				d = append(d, rel)
			}
		}
		imports[pkg] = d
		return d
	}
	for pkg, deny := range forbidden {
		seen := map[string]string{} // package → the package that imports it
		queue := []string{pkg}
		for len(queue) > 0 {
			cur := queue[0]
			queue = queue[1:]
			for _, d := range deps(cur) {
				if _, ok := seen[d]; !ok && d != pkg {
					seen[d] = cur
					queue = append(queue, d)
				}
			}
		}
		for _, d := range deny {
			if via, ok := seen[d]; ok {
				if via == pkg {
					t.Errorf("%s imports %s", pkg, d)
				} else {
					t.Errorf("%s imports %s (through %s)", pkg, d, via)
				}
			}
		}
	}
}
