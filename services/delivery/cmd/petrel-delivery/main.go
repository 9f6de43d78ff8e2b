// Command petrel-delivery runs the delivery service. It only wires the
// configuration to the service's parts; see package delivery for what the
// service does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/petrel-mail/petrel/platform/config"
	"github.com/petrel-mail/petrel/platform/lifecycle"
	"github.com/petrel-mail/petrel/platform/logging"
	"github.com/petrel-mail/petrel/platform/telemetry"
	"github.com/petrel-mail/petrel/services/delivery"
)

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stderr))
}

// run returns the exit code: 0 after a clean shutdown or a good
// --check-config, 1 when the service failed, 2 for a bad configuration.
func run(args, environ []string, stderr io.Writer) int {
	f := config.New(delivery.Name)
	var cfg delivery.Config
	cfg.RegisterFlags(f)
	err := f.Parse(args, environ)
	if errors.Is(err, flag.ErrHelp) {
		f.Usage(stderr)
		return 0
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "petrel-delivery: bad configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return 2
	}
	if f.CheckConfig() {
		fmt.Fprintln(stderr, "petrel-delivery: configuration OK")
		return 0
	}
	log, err := logging.New(stderr, delivery.Name, cfg.Log)
	if err != nil {
		fmt.Fprintf(stderr, "petrel-delivery: %v\n", err)
		return 2
	}
	if err := serve(cfg, log); err != nil {
		log.Error("petrel-delivery failed", "err", err)
		return 1
	}
	return 0
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
