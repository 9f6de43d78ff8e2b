package main

import (
	"testing"

	"github.com/petrel-mail/petrel/platform/lifecycle/lifecycletest"
)

// TestBinary builds petrel-store, starts it on loopback port 0, probes its
// health, readiness and metrics and gRPC health, stops it with SIGTERM and
// checks that bad settings are refused with a clear message.
func TestBinary(t *testing.T) {
	lifecycletest.TestService(t, lifecycletest.Spec{Dir: ".", GRPC: true})
}
