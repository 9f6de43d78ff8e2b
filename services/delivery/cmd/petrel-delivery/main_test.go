package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	deliveryv1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/delivery/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/petrel-mail/petrel/platform/lifecycle/lifecycletest"
	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/testenv"
	"github.com/petrel-mail/petrel/services/delivery/internal/queue"
	"github.com/petrel-mail/petrel/services/store/storeclient"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestBinary builds petrel-delivery and the real petrel-store, starts both
// on loopback port 0 against the test PostgreSQL, MinIO and NATS, probes
// the delivery's health, readiness (NATS and store), metrics, gRPC health
// and the queue admin API with and without the operator token, stops it
// with SIGTERM and checks that bad settings are refused with a clear
// message.
func TestBinary(t *testing.T) {
	bin := lifecycletest.Build(t, ".")
	storeBin := lifecycletest.Build(t, "../../../store/cmd/petrel-store")
	s3 := testenv.NewBucket(t)
	dataDir := t.TempDir()
	common := []string{
		"--s3-endpoint=" + s3.Endpoint, "--s3-bucket=" + s3.Bucket,
		"--s3-access-key=" + s3.AccessKey, "--s3-secret-key=" + s3.SecretKey, "--s3-region=" + s3.Region, "--s3-tls=false",
		"--nats-url=" + testenv.NATSURL(t), "--nats-subject-prefix=" + testenv.Prefix(),
		"--metrics-listen=127.0.0.1:0", "--grpc-listen=127.0.0.1:0", "--log-format=text",
	}
	_, storeAddrs := lifecycletest.Start(t, storeBin, append(common, "--postgres-url="+testenv.NewDatabase(t), "--dev-generate-secrets", "--data-dir="+dataDir)...)
	t.Cleanup(func() { deleteStreams(t, natsx.Options{Prefix: testenv.Prefix()}) })
	deps := append(common, "--store-addr="+storeAddrs["grpc"], "--store-token-file="+filepath.Join(dataDir, "delivery.token"))

	t.Run("StartServeStop", func(t *testing.T) {
		p, addrs := lifecycletest.Start(t, bin, append(deps, "--log-level=debug")...)
		base := "http://" + addrs["metrics"]
		lifecycletest.WaitHTTP(t, base+"/healthz", http.StatusOK)
		lifecycletest.WaitHTTP(t, base+"/readyz", http.StatusOK)
		metrics := lifecycletest.WaitHTTP(t, base+"/metrics", http.StatusOK)
		for _, want := range []string{"go_goroutines", "petrel_delivery_unavailable_retries_total",
			`petrel_delivery_queue_entries{state="active"} 0`, `petrel_delivery_queue_entries{state="deferred"} 0`,
			"petrel_delivery_suspended_destinations 0"} {
			if !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		if st := lifecycletest.GRPCHealth(t, addrs["grpc"]); st != healthgrpc.HealthCheckResponse_SERVING {
			t.Fatalf("gRPC health = %v", st)
		}

		cc, err := grpc.NewClient(addrs["grpc"], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		adm := deliveryv1.NewQueueAdminServiceClient(cc)
		ctx, cancel := context.WithTimeout(context.Background(), lifecycletest.Timeout)
		defer cancel()
		if _, err := adm.CountQueueEntries(ctx, &deliveryv1.CountQueueEntriesRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("queue admin without a token: %v", err)
		}
		op, err := storeclient.ReadTokenFile(filepath.Join(dataDir, "operator.token"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := adm.CountQueueEntries(storeclient.WithToken(ctx, op), &deliveryv1.CountQueueEntriesRequest{}); err != nil {
			t.Fatalf("queue admin with the operator token: %v", err)
		}

		if code := p.Terminate(t); code != 0 {
			t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.Output())
		}
		if !strings.Contains(p.Output(), "shut down cleanly") {
			t.Errorf("no clean shutdown logged:\n%s", p.Output())
		}
	})
	t.Run("BadConfig", func(t *testing.T) {
		code, out := runToExit(t, bin, []string{"--metrics-listen=nonsense", "--shutdown-grace=-1s", "--concurrency=0", "--retry-ceiling=1s", "--initial-conns-per-destination=-1"}, []string{"PETREL_LOG_FORMAT=xml"})
		if code == 0 {
			t.Fatalf("exit code 0 with a bad config:\n%s", out)
		}
		for _, want := range []string{
			`--metrics-listen: "nonsense" is not host:port`,
			"--shutdown-grace: must be a positive duration",
			`--log-format: "xml" is not one of`,
			"--store-token-file: the delivery service token file is required",
			"--s3-bucket: a bucket is required",
			"--concurrency: must be positive",
			"--retry-ceiling: retry ceiling 1s must be at least floor",
			"--initial-conns-per-destination: must be 0 (start at the maximum) or positive",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		code, out = runToExit(t, bin, append(deps, "--check-config"), nil)
		if code != 0 || !strings.Contains(out, "configuration OK") {
			t.Fatalf("--check-config on a good config: %d\n%s", code, out)
		}
		code, out = runToExit(t, bin, []string{"--no-such-flag"}, nil)
		if code == 0 || !strings.Contains(out, "no-such-flag") {
			t.Fatalf("unknown flag: %d\n%s", code, out)
		}
	})
}

// deleteStreams removes the streams the binary declared on the shared
// NATS server.
func deleteStreams(t *testing.T, o natsx.Options) {
	ctx, cancel := context.WithTimeout(context.Background(), lifecycletest.Timeout)
	defer cancel()
	nc, js, err := natsx.Connect(ctx, natsx.Config{URLs: []string{testenv.NATSURL(t)}, Name: "delivery-test"})
	if err != nil {
		t.Errorf("connect to delete streams: %v", err)
		return
	}
	defer nc.Close()
	if err := natsx.WaitConnected(ctx, nc); err != nil {
		t.Errorf("connect to delete streams: %v", err)
		return
	}
	if err := errors.Join(natsx.DeleteStreams(ctx, js, o), queue.DeleteDeferred(ctx, js, o)); err != nil {
		t.Errorf("delete streams: %v", err)
	}
}

func runToExit(t *testing.T, bin string, args, env []string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lifecycletest.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PETREL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run %s: %v", bin, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}
