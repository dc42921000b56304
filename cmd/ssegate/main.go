// Command ssegate is an HTTP/2 TLS reverse proxy that turns a polled JSON
// API into Server-Sent Events. It is configured with SSEGATE_* environment
// variables; run it with -h to list them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ssegate/ssegate/config"
	"github.com/ssegate/ssegate/internal/app"
)

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

func run(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ssegate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	demo := fs.Bool("demo", false, "run the built-in demo API behind the gateway (same as SSEGATE_DEMO=true)")
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: ssegate [-demo] [-version]\n\nssegate is an HTTP/2 TLS reverse proxy that turns a polled API into Server-Sent Events.\n\nFlags:\n")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fmt.Fprintf(stdout, "\nEnvironment:\n")
		_ = config.PrintUsage(stdout) // nothing useful to do if stdout is gone
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *version {
		fmt.Fprintln(stdout, "ssegate", app.Version())
		return 0
	}

	cfg, err := config.Load(environ)
	if err == nil {
		cfg.Demo = cfg.Demo || *demo
		err = cfg.Validate()
	}
	unknown := config.UnknownVariables(environ)
	if err != nil {
		// A misspelling may be the cause: say so on the same line.
		for _, u := range unknown {
			err = fmt.Errorf("%w; %s", err, u)
		}
		fmt.Fprintf(stderr, "ssegate: %v\n", err)
		return 1
	}
	log := app.NewLogger(cfg, stderr)
	for _, u := range unknown {
		log.Warn("unknown variable ignored", "name", u.Name, "closest", u.Closest)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runGateway(ctx, cfg, log, stdout); err != nil {
		fmt.Fprintf(stderr, "ssegate: %v\n", err)
		return 1
	}
	return 0
}
