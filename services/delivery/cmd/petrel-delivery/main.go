// Command petrel-delivery runs the delivery service. It only wires the
// configuration to the service's parts; see package delivery for what the
// service does.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/petrel-mail/petrel/platform/lifecycle"
	"github.com/petrel-mail/petrel/platform/telemetry"
	"github.com/petrel-mail/petrel/services/delivery"
)

func main() {
	var cfg delivery.Config
	os.Exit(lifecycle.Main(delivery.Name, &cfg, &cfg.Log, os.Args[1:], os.Environ(), os.Stderr,
		func(log *slog.Logger) error { return serve(cfg, log) }))
}

func serve(cfg delivery.Config, log *slog.Logger) error {
	shutdownTracing, err := telemetry.SetupTracing(telemetry.TracingOptions{Service: "petrel-delivery"})
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
	startCtx, cancel := context.WithTimeout(context.Background(), startTimeout)
	svc, err := delivery.New(startCtx, cfg, log, reg, ready)
	cancel()
	if err != nil {
		return err
	}
	defer svc.Close()

	metricsLn, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	grpcLn, err := net.Listen("tcp", cfg.GRPCListen)
	if err != nil {
		return fmt.Errorf("gRPC listener: %w", err)
	}
	addrs := map[string]string{"metrics": metricsLn.Addr().String(), "grpc": grpcLn.Addr().String()}

	log.Info("listening", "metrics", addrs["metrics"], "grpc", addrs["grpc"])
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
		lifecycle.Server("grpc", svc.GRPC, grpcLn),
		svc.ConsumerComponent(),
	)
}

// startTimeout bounds connecting to NATS and declaring the streams.
const startTimeout = 30 * time.Second
