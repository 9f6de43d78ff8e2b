// Command petrel-smtp runs the smtp service. It only wires the
// configuration to the service's parts; see package smtp for what the
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
	"github.com/petrel-mail/petrel/services/smtp"
)

func main() {
	var cfg smtp.Config
	os.Exit(lifecycle.Main(smtp.Name, &cfg, &cfg.Log, os.Args[1:], os.Environ(), os.Stderr,
		func(log *slog.Logger) error { return serve(cfg, log) }))
}

func serve(cfg smtp.Config, log *slog.Logger) error {
	shutdownTracing, err := telemetry.SetupTracing(telemetry.TracingOptions{Service: "petrel-smtp"})
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
	svc, err := smtp.New(ctx, cfg, log, reg, ready)
	if err != nil {
		return err
	}
	defer svc.Close()
	var group smtp.Group
	for _, l := range svc.Listeners {
		ln, err := net.Listen("tcp", l.Addr)
		if err != nil {
			return fmt.Errorf("%s listener: %w", l.Name, err)
		}
		addrs[l.Name] = ln.Addr().String()
		if ln, err = l.Listen(ln); err != nil {
			return err
		}
		group.Add(l, ln)
	}

	log.Info("listening", "addrs", addrs)
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
		&group,
	)
}
