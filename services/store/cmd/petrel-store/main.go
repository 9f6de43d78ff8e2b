// Command petrel-store runs the store service. It only wires the
// configuration to the service's parts; see package store for what the
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
	"github.com/petrel-mail/petrel/services/store"
)

func main() {
	var cfg store.Config
	os.Exit(lifecycle.Main(store.Name, &cfg, &cfg.Log, os.Args[1:], os.Environ(), os.Stderr,
		func(log *slog.Logger) error { return serve(cfg, log) }))
}

func serve(cfg store.Config, log *slog.Logger) error {
	shutdownTracing, err := telemetry.SetupTracing(telemetry.TracingOptions{Service: "petrel-store"})
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

	ctx := context.Background()
	svc, err := store.New(ctx, cfg, log, reg, ready)
	if err != nil {
		return err
	}
	defer svc.Close()
	grpcLn, err := net.Listen("tcp", cfg.GRPCListen)
	if err != nil {
		return fmt.Errorf("gRPC listener: %w", err)
	}
	addrs["grpc"] = grpcLn.Addr().String()

	log.Info("listening", "metrics", addrs["metrics"], "grpc", addrs["grpc"])
	if cfg.AddrFile != "" {
		if err := lifecycle.WriteAddrFile(cfg.AddrFile, addrs); err != nil {
			return err
		}
	}
	return lifecycle.Run(ctx, lifecycle.Options{
		Logger:      log,
		Grace:       cfg.ShutdownGrace,
		BeforeDrain: ready.SetDraining,
	},
		lifecycle.Server("telemetry", tel, metricsLn),
		svc.GC,
		lifecycle.Server("grpc", svc.GRPC, grpcLn),
	)
}
