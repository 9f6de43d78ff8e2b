package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/petrel-mail/petrel/platform/blob/s3blob"
	"github.com/petrel-mail/petrel/platform/lifecycle/lifecycletest"
	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/testenv"
	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const serviceToken = "svc-smtp-binary-test"

// directory is the store's DirectoryService as far as this test needs
// it: example.test is local with one user, everything else is remote.
type directory struct {
	storev1.UnimplementedDirectoryServiceServer
}

func (directory) ResolveRecipient(ctx context.Context, req *storev1.ResolveRecipientRequest) (*storev1.ResolveRecipientResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) != 1 || v[0] != "Bearer "+serviceToken {
		return nil, status.Error(codes.Unauthenticated, "no service token")
	}
	switch addr := strings.ToLower(req.GetAddress()); {
	case addr == "bob@example.test":
		return &storev1.ResolveRecipientResponse{Status: storev1.RecipientStatus_RECIPIENT_STATUS_LOCAL, TenantId: "tenant-1"}, nil
	case strings.HasSuffix(addr, "@example.test"):
		return &storev1.ResolveRecipientResponse{Status: storev1.RecipientStatus_RECIPIENT_STATUS_UNKNOWN_USER}, nil
	}
	return &storev1.ResolveRecipientResponse{Status: storev1.RecipientStatus_RECIPIENT_STATUS_NOT_LOCAL}, nil
}

// startStore serves the directory and the gRPC health service (the
// binary's readiness asks it) on loopback.
func startStore(t *testing.T) string {
	t.Helper()
	gs := grpc.NewServer()
	storev1.RegisterDirectoryServiceServer(gs, directory{})
	healthgrpc.RegisterHealthServer(gs, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

type deps struct {
	args   []string
	blob   *s3blob.Store
	js     jetstream.JetStream
	nopts  natsx.Options
	bucket string
}

func setup(t *testing.T) deps {
	t.Helper()
	storeAddr := startStore(t)
	tokenFile := filepath.Join(t.TempDir(), "smtp.token")
	if err := os.WriteFile(tokenFile, []byte(serviceToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := testenv.NewBucket(t)
	st, err := s3blob.New(s3blob.Config{Endpoint: b.Endpoint, AccessKey: b.AccessKey, SecretKey: b.SecretKey, Bucket: b.Bucket, Region: b.Region})
	if err != nil {
		t.Fatal(err)
	}
	nopts := natsx.Options{Prefix: testenv.Prefix() + "_" + strings.ReplaceAll(t.Name(), "/", "_")}
	nc, js, err := natsx.Connect(context.Background(), natsx.Config{URLs: []string{testenv.NATSURL(t)}, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = natsx.DeleteStreams(ctx, js, nopts)
		nc.Close()
	})
	args := []string{
		"--metrics-listen=127.0.0.1:0", "--log-format=text", "--log-level=debug",
		"--mx-listen=127.0.0.1:0", "--submission-listen=127.0.0.1:0", "--submissions-listen=127.0.0.1:0",
		"--hostname=mx.example.test", "--dev-self-signed",
		"--store-addr=" + storeAddr, "--store-token-file=" + tokenFile,
		"--nats-url=" + testenv.NATSURL(t), "--nats-subject-prefix=" + nopts.Prefix,
		"--s3-endpoint=" + b.Endpoint, "--s3-bucket=" + b.Bucket, "--s3-access-key=" + b.AccessKey,
		"--s3-secret-key=" + b.SecretKey, "--s3-tls=false",
		// No DNS in the test: sender authentication is covered by
		// internal/msgauth and internal/server against a loopback DNS.
		"--check-sender-auth=false",
	}
	return deps{args: args, blob: st, js: js, nopts: nopts, bucket: b.Bucket}
}

type wire struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *wire {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	return &wire{t: t, c: c, r: bufio.NewReader(c)}
}

// reply returns the last line of the next reply.
func (w *wire) reply() string {
	w.t.Helper()
	for {
		line, err := w.r.ReadString('\n')
		if err != nil {
			w.t.Fatalf("read reply: %v (got %q)", err, line)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 || line[3] != '-' {
			return line
		}
	}
}

func (w *wire) expect(want string) string {
	w.t.Helper()
	got := w.reply()
	if !strings.HasPrefix(got, want) {
		w.t.Fatalf("reply %q, want prefix %q", got, want)
	}
	return got
}

func (w *wire) cmd(line, want string) string {
	w.t.Helper()
	if _, err := io.WriteString(w.c, line+"\r\n"); err != nil {
		w.t.Fatal(err)
	}
	return w.expect(want)
}

// TestBinary starts petrel-smtp with real NATS JetStream, real S3 and a
// directory over gRPC, waits for /readyz, sends one message to the MX
// listener and checks that its 250 stands for an object and a queue entry,
// then stops the binary with SIGTERM while a session is open: the session
// is told 421 and the process exits 0.
func TestBinary(t *testing.T) {
	bin := lifecycletest.Build(t, ".")
	d := setup(t)
	p, addrs := lifecycletest.Start(t, bin, append(d.args, "--shutdown-grace=3s")...)
	for _, k := range []string{"metrics", "mx", "submission", "submissions"} {
		if addrs[k] == "" {
			t.Fatalf("no %s address in %v", k, addrs)
		}
	}
	base := "http://" + addrs["metrics"]
	lifecycletest.WaitHTTP(t, base+"/healthz", http.StatusOK)
	lifecycletest.WaitHTTP(t, base+"/readyz", http.StatusOK)

	w := dial(t, addrs["mx"])
	w.expect("220 mx.example.test")
	w.cmd("EHLO client.test", "250 ")
	w.cmd("MAIL FROM:<alice@remote.test>", "250 ")
	w.cmd("RCPT TO:<nobody@example.test>", "550 5.1.1")
	w.cmd("RCPT TO:<someone@elsewhere.test>", "554 5.7.1")
	w.cmd("RCPT TO:<bob@example.test>", "250 ")
	w.cmd("DATA", "354 ")
	reply := w.cmd("From: alice@remote.test\r\nTo: bob@example.test\r\nSubject: binary test\r\n\r\nHello from the binary test.\r\n.", "250 2.0.0")
	qid := reply[strings.LastIndex(reply, " ")+1:]

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := d.js.Stream(ctx, d.nopts.QueueStream())
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetLastMsgForSubject(ctx, d.nopts.QueueInboundSubject())
	if err != nil {
		t.Fatal(err)
	}
	var entry queuev1.QueueEntry
	if err := proto.Unmarshal(msg.Data, &entry); err != nil {
		t.Fatal(err)
	}
	if entry.GetQueueId() != qid || len(entry.GetRecipients()) != 1 || entry.GetRecipients()[0].GetAddress() != "bob@example.test" {
		t.Fatalf("queue entry %v, want queue id %s for bob", &entry, qid)
	}
	r, _, err := d.blob.Get(ctx, entry.GetBlobKey())
	if err != nil {
		t.Fatalf("object of queued message: %v", err)
	}
	body, _ := io.ReadAll(r)
	r.Close()
	if !strings.HasPrefix(string(body), "Received: from client.test") || !strings.Contains(string(body), "Hello from the binary test.") {
		t.Fatalf("stored message:\n%s", body)
	}
	metrics := lifecycletest.WaitHTTP(t, base+"/metrics", http.StatusOK)
	if !strings.Contains(metrics, `petrel_smtp_messages_accepted_total{listener="mx"} 1`) {
		t.Errorf("/metrics does not count the message")
	}

	// An idle session at SIGTERM: told 421 when the grace ends.
	w.cmd("NOOP", "250 ")
	exited := make(chan int, 1)
	go func() { exited <- p.Terminate(t) }()
	w.expect("421 4.3.2")
	if code := <-exited; code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.Output())
	}
	if !strings.Contains(p.Output(), "shut down cleanly") {
		t.Errorf("no clean shutdown logged:\n%s", p.Output())
	}
}

// TestBadConfig checks that bad settings are all reported at once and that
// --check-config accepts a good configuration without starting.
func TestBadConfig(t *testing.T) {
	bin := lifecycletest.Build(t, ".")
	run := func(args ...string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec(ctx, bin, args...)
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	code, out := run("--metrics-listen=nonsense", "--shutdown-grace=-1s", "--mx-listen=nope", "--submissions-listen=127.0.0.1:0", "--nats-subject-prefix=a.b", "--max-recipients=0")
	if code != 2 {
		t.Fatalf("exit code %d with a bad config:\n%s", code, out)
	}
	for _, want := range []string{
		`--metrics-listen: "nonsense" is not host:port`,
		"--shutdown-grace: must be a positive duration",
		`--mx-listen: "nope" is not host:port`,
		"--tls-cert-file: the submissions listener needs a certificate",
		"--store-token-file:",
		"--s3-bucket:",
		"--nats-subject-prefix:",
		"--max-recipients: must be positive",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out = run("--check-config", "--dev-self-signed", "--store-token-file=/nonexistent", "--blob-dir=/tmp/x")
	if code != 0 || !strings.Contains(out, "configuration OK") {
		t.Fatalf("--check-config on a good config: %d\n%s", code, out)
	}
}

// exec runs bin without the developer's PETREL_* variables.
func exec(ctx context.Context, bin string, args ...string) *osexec.Cmd {
	cmd := osexec.CommandContext(ctx, bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PETREL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}
