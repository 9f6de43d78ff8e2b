// Command petrel-smtp runs the smtp service. It only wires the
// configuration to the service's parts; see package smtp for what the
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

	"github.com/petrel-mail/petrel/platform/config"
	"github.com/petrel-mail/petrel/platform/lifecycle"
	"github.com/petrel-mail/petrel/platform/logging"
	"github.com/petrel-mail/petrel/platform/telemetry"
	"github.com/petrel-mail/petrel/services/smtp"
)

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stderr))
}

// run returns the exit code: 0 after a clean shutdown or a good
// --check-config, 1 when the service failed, 2 for a bad configuration.
func run(args, environ []string, stderr io.Writer) int {
	f := config.New(smtp.Name)
	var cfg smtp.Config
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
		fmt.Fprintf(stderr, "petrel-smtp: bad configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return 2
	}
	if f.CheckConfig() {
		fmt.Fprintln(stderr, "petrel-smtp: configuration OK")
		return 0
	}
	log, err := logging.New(stderr, smtp.Name, cfg.Log)
	if err != nil {
		fmt.Fprintf(stderr, "petrel-smtp: %v\n", err)
		return 2
	}
	if err := serve(cfg, log); err != nil {
		log.Error("petrel-smtp failed", "err", err)
		return 1
	}
	return 0
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
