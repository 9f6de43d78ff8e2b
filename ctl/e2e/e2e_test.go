package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"

	"github.com/petrel-mail/petrel/platform/testenv"
	"github.com/petrel-mail/petrel/services/store/storeclient"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// deployment is one `make dev` run in its own process group, with its
// data directory and the addresses it was told to listen on.
type deployment struct {
	t     *testing.T
	root  string // repository
	data  string // PETREL_RUN_DATA_DIR
	env   []string
	addrs map[string]string

	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Len()
}

// from returns what was written after the first off bytes.
func (b *syncBuffer) from(off int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b.Bytes()[off:])
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// freePort returns a loopback address nothing listens on right now. The
// services are separate processes configured by flags, so they cannot be
// handed a listener; fixed free ports keep this test off the default ports
// a developer's own `make dev` uses.
// newDeployment prepares a `make dev` run on the test's PostgreSQL
// database, bucket and NATS prefix (scripts/test-deps.sh uses the
// PETREL_TEST_* settings it finds in the environment), with its data in a
// temporary directory.
func newDeployment(t *testing.T) *deployment {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	d := &deployment{t: t, root: root, data: t.TempDir(), addrs: map[string]string{}}
	for _, name := range []string{"store_grpc", "store_metrics", "smtp_mx", "smtp_submission", "smtp_submissions", "smtp_metrics", "delivery_grpc", "delivery_metrics", "imap_metrics", "pop3_metrics"} {
		d.addrs[name] = testenv.FreeAddr(t)
	}
	s3 := testenv.NewBucket(t)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PETREL_") || strings.HasPrefix(kv, "PETREL_TEST_") {
			d.env = append(d.env, kv)
		}
	}
	d.env = append(d.env,
		"PETREL_RUN_DATA_DIR="+d.data,
		"PETREL_POSTGRES_URL="+testenv.NewDatabase(t),
		"PETREL_NATS_URL="+testenv.NATSURL(t),
		"PETREL_NATS_SUBJECT_PREFIX="+testenv.Prefix()+"e2e",
		"PETREL_S3_ENDPOINT="+s3.Endpoint, "PETREL_S3_BUCKET="+s3.Bucket,
		"PETREL_S3_ACCESS_KEY="+s3.AccessKey, "PETREL_S3_SECRET_KEY="+s3.SecretKey,
		"PETREL_S3_REGION="+s3.Region, "PETREL_S3_TLS="+strconv.FormatBool(s3.UseTLS),
		"PETREL_STORE_S3_CREATE_BUCKET=false",
		"PETREL_STORE_GRPC_LISTEN="+d.addrs["store_grpc"],
		"PETREL_STORE_METRICS_LISTEN="+d.addrs["store_metrics"],
		"PETREL_SMTP_MX_LISTEN="+d.addrs["smtp_mx"],
		"PETREL_SMTP_SUBMISSION_LISTEN="+d.addrs["smtp_submission"],
		"PETREL_SMTP_SUBMISSIONS_LISTEN="+d.addrs["smtp_submissions"],
		"PETREL_SMTP_METRICS_LISTEN="+d.addrs["smtp_metrics"],
		"PETREL_SMTP_STORE_ADDR="+d.addrs["store_grpc"],
		"PETREL_DELIVERY_STORE_ADDR="+d.addrs["store_grpc"],
		"PETREL_DELIVERY_GRPC_LISTEN="+d.addrs["delivery_grpc"],
		"PETREL_DELIVERY_METRICS_LISTEN="+d.addrs["delivery_metrics"],
		"PETREL_IMAP_METRICS_LISTEN="+d.addrs["imap_metrics"],
		"PETREL_POP3_METRICS_LISTEN="+d.addrs["pop3_metrics"],
		// SPF, DKIM and DMARC lookups: see nxdomainServer.
		"PETREL_SMTP_DNS_SERVER="+nxdomainServer(t),
		// Remote mail goes to a smarthost that refuses connections, so it
		// stays deferred in the queue for the queue commands to find. A
		// shared variable: it reaches only services with that flag.
		"PETREL_SMARTHOST="+testenv.FreeAddr(t),
		// petrelctl finds the store and the delivery service here.
		"PETREL_SERVER="+d.addrs["store_grpc"],
		"PETREL_QUEUE_SERVER="+d.addrs["delivery_grpc"],
		"PETREL_TOKEN_FILE="+filepath.Join(d.data, "store", "operator.token"),
	)
	return d
}

// start runs `make dev` and waits until it reports every service started.
func (d *deployment) start() {
	t := d.t
	t.Helper()
	d.out = &syncBuffer{}
	d.done = make(chan struct{})
	d.cmd = exec.Command("make", "-C", d.root, "dev")
	d.cmd.Env = d.env
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The services hold the output pipe until they exit; do not wait for
	// stragglers forever.
	d.cmd.WaitDelay = 2 * time.Minute
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(d.kill)
	began := time.Now()
	// Building every binary can take minutes on a loaded machine.
	d.waitOutput("[run] started store delivery smtp imap pop3", 10*time.Minute)
	t.Logf("make dev built and started everything in %s", time.Since(began).Round(time.Second))
}

// waitOutput waits until the combined output holds s.
func (d *deployment) waitOutput(s string, timeout time.Duration) {
	d.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(d.out.String(), s) {
		select {
		case <-d.done:
			d.t.Fatalf("make dev exited before %q:\n%s", s, d.out.String())
		case <-deadline.C:
			d.t.Fatalf("no %q after %s:\n%s", s, timeout, d.out.String())
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM to the process group, as Ctrl-C would reach it, and
// checks that every service shut down cleanly.
func (d *deployment) stop() {
	t := d.t
	t.Helper()
	began := time.Now()
	if err := syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("make dev still running 2m after SIGTERM:\n%s", d.out.String())
	}
	t.Logf("make dev stopped in %s", time.Since(began).Round(100*time.Millisecond))
	out := d.out.String()
	for _, s := range []string{"store", "delivery", "smtp", "imap", "pop3"} {
		if !strings.Contains(out, "["+s+"] ") || !strings.Contains(out, "service="+s) {
			t.Errorf("no prefixed log lines of %s", s)
		}
	}
	if n := strings.Count(out, `msg="shut down cleanly"`); n < 5 {
		t.Errorf("%d services shut down cleanly, want 5:\n%s", n, out)
	}
	if !strings.Contains(out, "[run] stopped") {
		t.Errorf("run.sh did not report stopping:\n%s", out)
	}
}

// kill ends whatever is left: the group, and the services (each in its
// own process group) through their pid files.
func (d *deployment) kill() {
	select {
	case <-d.done:
	default:
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	}
	files, _ := filepath.Glob(filepath.Join(d.data, "run", "*.pid"))
	for _, f := range files {
		if pid, err := readPid(f); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	<-d.done
	if d.t.Failed() {
		d.t.Logf("make dev output:\n%s", d.out.String())
	}
}

func readPid(file string) (int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// run runs a client program with the deployment's environment.
func (d *deployment) run(stdin string, name string, args ...string) (int, string) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = d.env
	cmd.Dir = d.root
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		d.t.Fatalf("%s %q: %v", name, args, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

func (d *deployment) petrelctl(want int, stdin string, args ...string) string {
	d.t.Helper()
	code, out := d.run(stdin, filepath.Join(d.root, "bin", "petrelctl"), args...)
	if code != want {
		d.t.Fatalf("petrelctl %s: exit %d, want %d:\n%s", strings.Join(args, " "), code, want, out)
	}
	return out
}

func hostPort(addr string) (string, string) {
	h, p, _ := net.SplitHostPort(addr)
	return h, p
}

// swaks sends one message and returns swaks' exit code and transcript.
func (d *deployment) swaks(addr string, args ...string) (int, string) {
	d.t.Helper()
	h, p := hostPort(addr)
	return d.run("", "swaks", append([]string{"--server", h, "--port", p, "--timeout", "60", "--hide-informational"}, args...)...)
}

// inbox returns the Subject of every message in the INBOX of address.
func (d *deployment) inbox(ctx context.Context, address, password string) ([]string, error) {
	return d.inboxKeys(ctx, address, password, subject)
}

func subject(h mail.Header) string { return h.Get("Subject") }

// inboxKeys returns key(header) of every message in the INBOX of address,
// by logging in through the store's DirectoryService with the imap service
// token, as the IMAP frontend would.
func (d *deployment) inboxKeys(ctx context.Context, address, password string, key func(mail.Header) string) ([]string, error) {
	tok, err := storeclient.ReadTokenFile(filepath.Join(d.data, "store", "imap.token"))
	if err != nil {
		return nil, err
	}
	cl, err := storeclient.Dial(d.addrs["store_grpc"], storeclient.Options{Insecure: true, Token: tok})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	auth, err := cl.Directory.Authenticate(ctx, &storev1.AuthenticateRequest{Username: address, Password: password, Service: "imap", RemoteIp: "127.0.0.1"})
	if err != nil {
		return nil, fmt.Errorf("log in as %s: %w", address, err)
	}
	ctx = storeclient.WithToken(ctx, auth.GetSessionToken())
	stream, err := cl.Messages.FetchMessages(ctx, &storev1.FetchMessagesRequest{
		Mailbox: "INBOX",
		Uids:    &storev1.UIDSet{Ranges: []*storev1.UIDRange{{Start: 1, Stop: 0}}},
		Fields:  []storev1.FetchField{storev1.FetchField_FETCH_FIELD_HEADER},
	})
	if err != nil {
		return nil, err
	}
	var keys []string
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return keys, nil
		}
		if err != nil {
			return nil, err
		}
		for _, m := range resp.GetMessages() {
			msg, err := mail.ReadMessage(bufio.NewReader(io.MultiReader(bytes.NewReader(m.GetHeader()), strings.NewReader("\r\n"))))
			if err != nil {
				return nil, fmt.Errorf("parse header of UID %d: %w", m.GetUid(), err)
			}
			keys = append(keys, key(msg.Header))
		}
	}
}

// waitInbox polls the INBOX until done(subjects) holds.
func (d *deployment) waitInbox(address, password string, timeout time.Duration, done func([]string) bool) []string {
	d.t.Helper()
	return d.waitInboxKeys(address, password, timeout, subject, done)
}

// waitInboxKeys polls the INBOX until done(keys) holds (see inboxKeys).
func (d *deployment) waitInboxKeys(address, password string, timeout time.Duration, key func(mail.Header) string, done func([]string) bool) []string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last []string
	var lastErr error
	for {
		s, err := d.inboxKeys(ctx, address, password, key)
		if err == nil {
			last = s
			if done(s) {
				return s
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			d.t.Fatalf("INBOX of %s after %s: %d messages (last error %v)", address, timeout, len(last), lastErr)
		case <-tick.C:
		}
	}
}

// waitReady polls a service's /readyz until it answers 200.
func waitReady(t *testing.T, addr string) {
	t.Helper()
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !ready(addr) {
		select {
		case <-deadline.C:
			t.Fatalf("%s not ready", addr)
		case <-tick.C:
		}
	}
}

// readyClient does not wait for a hung service forever.
var readyClient = &http.Client{Timeout: 5 * time.Second}

// ready reports whether a service's /readyz answers 200.
func ready(addr string) bool {
	resp, err := readyClient.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
