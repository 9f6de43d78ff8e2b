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
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc/codes"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/petrel-mail/petrel/platform/lifecycle/lifecycletest"
	"github.com/petrel-mail/petrel/platform/testenv"
	"github.com/petrel-mail/petrel/services/store"
	"github.com/petrel-mail/petrel/services/store/storeclient"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestBinary builds petrel-store, starts it on loopback port 0 against the
// test PostgreSQL, MinIO and NATS with --dev-generate-secrets, probes its
// health, readiness, metrics and gRPC health, checks the generated secrets
// and that a generated service token is accepted, stops it with SIGTERM and
// checks that bad settings are refused with a clear message.
func TestBinary(t *testing.T) {
	bin := lifecycletest.Build(t, ".")
	s3 := testenv.NewBucket(t)
	dataDir := t.TempDir()
	// The binary creates this bucket (--s3-create-bucket); testenv only
	// removes the buckets it made itself.
	t.Cleanup(func() {
		cl, err := minio.New(s3.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, ""), Secure: s3.UseTLS, Region: s3.Region})
		if err == nil {
			err = cl.RemoveBucket(context.Background(), s3.Bucket+"-created")
		}
		if err != nil {
			t.Errorf("remove the created bucket: %v", err)
		}
	})
	deps := []string{
		"--postgres-url=" + testenv.NewDatabase(t),
		"--s3-endpoint=" + s3.Endpoint, "--s3-bucket=" + s3.Bucket + "-created", "--s3-create-bucket",
		"--s3-access-key=" + s3.AccessKey, "--s3-secret-key=" + s3.SecretKey, "--s3-region=" + s3.Region, "--s3-tls=false",
		"--nats-url=" + testenv.NATSURL(t), "--nats-subject-prefix=" + testenv.Prefix(),
		"--dev-generate-secrets", "--data-dir=" + dataDir,
	}
	t.Run("StartServeStop", func(t *testing.T) {
		p, addrs := lifecycletest.Start(t, bin, append(deps, "--metrics-listen=127.0.0.1:0", "--grpc-listen=127.0.0.1:0", "--log-format=text", "--log-level=debug", "--gc-interval=1s")...)
		base := "http://" + addrs["metrics"]
		lifecycletest.WaitHTTP(t, base+"/healthz", http.StatusOK)
		lifecycletest.WaitHTTP(t, base+"/readyz", http.StatusOK)
		metrics := lifecycletest.WaitHTTP(t, base+"/metrics", http.StatusOK)
		for _, want := range []string{"go_goroutines", "process_start_time_seconds", "petrel_store_gc_objects_deleted_total"} {
			if !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		if st := lifecycletest.GRPCHealth(t, addrs["grpc"]); st != healthgrpc.HealthCheckResponse_SERVING {
			t.Fatalf("gRPC health = %v", st)
		}

		files := []string{"token-keys", "operator.token"}
		for _, f := range store.DevTokenFiles {
			files = append(files, f)
		}
		for _, f := range files {
			fi, err := os.Stat(filepath.Join(dataDir, f))
			if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
				t.Fatalf("%s: %v %v", f, fi, err)
			}
		}
		tok, err := storeclient.ReadTokenFile(filepath.Join(dataDir, "delivery.token"))
		if err != nil {
			t.Fatal(err)
		}
		cl, err := storeclient.Dial(addrs["grpc"], storeclient.Options{Insecure: true, Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// The token is accepted (the request reaches the handler, which
		// refuses the malformed request), where a bad one is not.
		_, err = cl.Messages.Deliver(ctx, &storev1.DeliverRequest{TenantId: "1", DeliveryId: "x", BlobKey: "msg/2/x"})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("deliver with the generated delivery token: %v", err)
		}
		_, err = cl.Mailboxes.ListMailboxes(ctx, &storev1.ListMailboxesRequest{Pattern: "*"})
		if !errors.Is(err, storeclient.ErrPermissionDenied) {
			t.Fatalf("mailbox call with a service token: %v", err)
		}

		// Directory and admin are wired: the operator creates an account,
		// a login through the smtp service token gives a session token, and
		// the session sees its INBOX.
		opTok, err := storeclient.ReadTokenFile(filepath.Join(dataDir, "operator.token"))
		if err != nil {
			t.Fatal(err)
		}
		op, err := storeclient.Dial(addrs["grpc"], storeclient.Options{Insecure: true, Token: opTok})
		if err != nil {
			t.Fatal(err)
		}
		defer op.Close()
		if _, err := op.Admin.CreateTenant(ctx, &storev1.CreateTenantRequest{Name: "default"}); err != nil {
			t.Fatalf("create tenant: %v", err)
		}
		if _, err := op.Admin.CreateDomain(ctx, &storev1.CreateDomainRequest{Name: "bin.test"}); err != nil {
			t.Fatalf("create domain: %v", err)
		}
		if _, err := op.Admin.CreateAccount(ctx, &storev1.CreateAccountRequest{Address: "ann@bin.test", Password: "correct horse"}); err != nil {
			t.Fatalf("create account: %v", err)
		}
		smtpTok, err := storeclient.ReadTokenFile(filepath.Join(dataDir, "smtp.token"))
		if err != nil {
			t.Fatal(err)
		}
		sm, err := storeclient.Dial(addrs["grpc"], storeclient.Options{Insecure: true, Token: smtpTok})
		if err != nil {
			t.Fatal(err)
		}
		defer sm.Close()
		login, err := sm.Directory.Authenticate(ctx, &storev1.AuthenticateRequest{Username: "ann@bin.test", Password: "correct horse", Service: "submission", RemoteIp: "127.0.0.1"})
		if err != nil {
			t.Fatalf("authenticate: %v", err)
		}
		list, err := sm.Mailboxes.ListMailboxes(storeclient.WithToken(ctx, login.SessionToken), &storev1.ListMailboxesRequest{Pattern: "*"})
		if err != nil || len(list.Mailboxes) != 1 || list.Mailboxes[0].Name != "INBOX" {
			t.Fatalf("session LIST = %v, %v", list, err)
		}

		if code := p.Terminate(t); code != 0 {
			t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.Output())
		}
		if !strings.Contains(p.Output(), "shut down cleanly") {
			t.Errorf("no clean shutdown logged:\n%s", p.Output())
		}
	})
	t.Run("BadConfig", func(t *testing.T) {
		code, out := runToExit(t, bin, []string{"--metrics-listen=nonsense", "--shutdown-grace=-1s", "--dev-generate-secrets"}, []string{"PETREL_LOG_FORMAT=xml"})
		if code == 0 {
			t.Fatalf("exit code 0 with a bad config:\n%s", out)
		}
		for _, want := range []string{
			`--metrics-listen: "nonsense" is not host:port`,
			"--shutdown-grace: must be a positive duration",
			`--log-format: "xml" is not one of`,
			"--postgres-url: a PostgreSQL URL is required",
			"--s3-bucket: a bucket is required",
			"--data-dir: --dev-generate-secrets needs --data-dir",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		code, out = runToExit(t, bin, append(deps, "--check-config", "--metrics-listen=127.0.0.1:0"), nil)
		if code != 0 || !strings.Contains(out, "configuration OK") {
			t.Fatalf("--check-config on a good config: %d\n%s", code, out)
		}
		code, out = runToExit(t, bin, []string{"--no-such-flag"}, nil)
		if code == 0 || !strings.Contains(out, "no-such-flag") {
			t.Fatalf("unknown flag: %d\n%s", code, out)
		}
	})
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
