// Package apptest builds gateway configurations for tests that run the
// gateway in-process.
package apptest

import (
	"testing"

	"github.com/ssegate/ssegate/config"
)

// Config loads and validates a configuration from "SSEGATE_KEY=value"
// pairs, failing the test on any error.
func Config(t testing.TB, env ...string) config.Config {
	t.Helper()
	cfg, err := config.Load(env)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
