// Command petrel-imap runs the imap service. It only wires the
// configuration to the service's parts; see package imap for what the
// service does.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/petrel-mail/petrel/platform/lifecycle"
	"github.com/petrel-mail/petrel/platform/telemetry"
	"github.com/petrel-mail/petrel/services/imap"
)

func main() {
	var cfg imap.Config
	os.Exit(lifecycle.Main(imap.Name, &cfg, &cfg.Log, os.Args[1:], os.Environ(), os.Stderr,
		func(log *slog.Logger) error { return serve(cfg, log) }))
}

func serve(cfg imap.Config, log *slog.Logger) error {
	shutdownTracing, err := telemetry.SetupTracing(telemetry.TracingOptions{Service: "petrel-imap"})
	if err != nil {
		return err
	}
	defer shutdownTracing(context.Background())

	reg := telemetry.NewRegistry()
	ready := telemetry.NewReadiness(0)
	tel, err := telemetry.NewServer(telemetry.Options{Registry: reg, Readiness: ready, Logger: log})
	if err != nil {
		return err
	}
	metricsLn, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	addrs := map[string]string{"metrics": metricsLn.Addr().String()}

	log.Info("listening", "metrics", addrs["metrics"])
	if cfg.AddrFile != "" {
		if err := lifecycle.WriteAddrFile(cfg.AddrFile, addrs); err != nil {
			return err
		}
	}
	return lifecycle.Run(context.Background(), lifecycle.Options{
		Logger:      log,
		Grace:       cfg.ShutdownGrace,
		BeforeDrain: ready.SetDraining,
	},
		lifecycle.Server("telemetry", tel, metricsLn),
	)
}
