package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/ssegate/ssegate/config"
	"github.com/ssegate/ssegate/internal/app"
	"github.com/ssegate/ssegate/internal/demo"
)

func runGateway(ctx context.Context, cfg config.Config, log *slog.Logger, stdout io.Writer) error {
	if !cfg.Demo {
		return app.Run(ctx, cfg, app.Options{Logger: log})
	}
	return demo.Run(ctx, cfg, demo.Options{Logger: log}, func(r demo.Ready) {
		fmt.Fprintf(stdout, "\nssegate demo is running. Open %s\n(the certificate is self-signed: accept it once, or see README, \"TLS\")\n\n", r.URL)
	})
}
