package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/ssegate/ssegate/config"
	"github.com/ssegate/ssegate/internal/app"
)

func runGateway(ctx context.Context, cfg config.Config, log *slog.Logger, stdout io.Writer) error {
	return app.Run(ctx, cfg, app.Options{Logger: log})
}
