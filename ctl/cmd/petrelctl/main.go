// Command petrelctl administers a Petrel installation: tenants, domains,
// accounts, app passwords, aliases, the DNS records to publish and the
// mail queue. Run 'petrelctl help'; exit codes are listed in
// github.com/petrel-mail/petrel/ctl/internal/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/petrel-mail/petrel/ctl/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	app := &cli.App{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	code := app.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
