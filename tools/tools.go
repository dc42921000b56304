//go:build tools

// Package tools pins the command-line tools CI runs, apart from the main
// module so that their dependencies never reach ssegate's.
package tools

import _ "github.com/summerwind/h2spec/cmd/h2spec"
