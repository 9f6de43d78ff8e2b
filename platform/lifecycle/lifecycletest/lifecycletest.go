// Package lifecycletest tests a service binary as an operator and
// Kubernetes see it: it builds the binary, starts it with every listener on
// 127.0.0.1:0, learns the bound addresses from the file named by
// --addr-file, probes /healthz, /readyz, /metrics and the gRPC health
// service (grpc.health.v1), sends SIGTERM and expects a clean exit.
package lifecycletest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/petrel-mail/petrel/platform/grpcx"
	"github.com/petrel-mail/petrel/platform/lifecycle"
)

// Timeout bounds each wait: building, starting, exiting.
const Timeout = 2 * time.Minute

// Build compiles the main package in dir (relative to the test's working
// directory, usually ".") into a temporary directory and returns the
// binary's path.
func Build(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "service")
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, out)
	}
	return bin
}

// Process is a running service binary.
type Process struct {
	cmd      *exec.Cmd
	output   *syncBuffer
	exited   chan struct{}
	exitCode int
}

// Start runs bin with args plus --addr-file and waits until the file
// appears; it returns the process and the addresses in the file.
func Start(t testing.TB, bin string, args ...string) (*Process, map[string]string) {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addrs.json")
	p := &Process{output: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, append(args, "--addr-file="+addrFile)...)
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	p.cmd.Env = cleanEnv()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		p.exitCode = p.cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("service output:\n%s", p.output.String())
		}
	})

	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		addrs, err := lifecycle.ReadAddrFile(addrFile)
		if err == nil {
			return p, addrs
		}
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		select {
		case <-p.exited:
			t.Fatalf("service exited with %d before listening:\n%s", p.exitCode, p.output.String())
		case <-deadline.C:
			t.Fatalf("no address file after %s:\n%s", Timeout, p.output.String())
		case <-tick.C:
		}
	}
}

// cleanEnv is the test's environment without PETREL_* variables, so the
// developer's shell cannot change what the binary is tested with.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PETREL_") {
			env = append(env, kv)
		}
	}
	return env
}

// Output is what the process wrote to stdout and stderr so far.
func (p *Process) Output() string { return p.output.String() }

// Terminate sends SIGTERM and returns the exit code.
func (p *Process) Terminate(t testing.TB) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		return p.exitCode
	case <-time.After(Timeout):
		t.Fatalf("service still running %s after SIGTERM", Timeout)
		return -1
	}
}

// WaitHTTP polls url until it answers want, and returns the body.
func WaitHTTP(t testing.TB, url string, want int) string {
	t.Helper()
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		code, body, err := get(client, url)
		if err == nil && code == want {
			return body
		}
		select {
		case <-deadline.C:
			t.Fatalf("GET %s: want %d, last got %d %q %v", url, want, code, body, err)
		case <-tick.C:
		}
	}
}

func get(client *http.Client, url string) (int, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// GRPCHealth returns the overall status reported by the gRPC health service
// at addr.
func GRPCHealth(t testing.TB, addr string) healthgrpc.HealthCheckResponse_ServingStatus {
	t.Helper()
	cc, err := grpcx.Dial(addr, grpcx.ClientOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := healthgrpc.NewHealthClient(cc).Check(ctx, &healthgrpc.HealthCheckRequest{}, grpcWaitForReady)
	if err != nil {
		t.Fatalf("gRPC health check at %s: %v", addr, err)
	}
	return resp.GetStatus()
}

// Spec describes a service binary for TestService.
type Spec struct {
	// Dir is the main package, relative to the test (usually ".").
	Dir string
	// GRPC says whether the service serves gRPC (address "grpc").
	GRPC bool
}

// TestService runs the standard start/probe/stop test and the bad-config
// test for a service binary.
func TestService(t *testing.T, spec Spec) {
	bin := Build(t, spec.Dir)
	t.Run("StartServeStop", func(t *testing.T) {
		args := []string{"--metrics-listen=127.0.0.1:0", "--log-format=text", "--log-level=debug"}
		if spec.GRPC {
			args = append(args, "--grpc-listen=127.0.0.1:0")
		}
		p, addrs := Start(t, bin, args...)
		base := "http://" + addrs["metrics"]
		if addrs["metrics"] == "" {
			t.Fatalf("no metrics address in %v", addrs)
		}
		WaitHTTP(t, base+"/healthz", http.StatusOK)
		WaitHTTP(t, base+"/readyz", http.StatusOK)
		metrics := WaitHTTP(t, base+"/metrics", http.StatusOK)
		for _, want := range []string{"go_goroutines", "process_start_time_seconds"} {
			if !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		if spec.GRPC {
			if addrs["grpc"] == "" {
				t.Fatalf("no grpc address in %v", addrs)
			}
			if st := GRPCHealth(t, addrs["grpc"]); st != healthgrpc.HealthCheckResponse_SERVING {
				t.Fatalf("gRPC health = %v", st)
			}
			metrics = WaitHTTP(t, base+"/metrics", http.StatusOK)
			if !strings.Contains(metrics, `petrel_grpc_server_handled_total{code="OK",method="/grpc.health.v1.Health/Check"}`) {
				t.Errorf("/metrics does not count the health check:\n%s", metrics)
			}
		}
		if code := p.Terminate(t); code != 0 {
			t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.Output())
		}
		if !strings.Contains(p.Output(), "shut down cleanly") {
			t.Errorf("no clean shutdown logged:\n%s", p.Output())
		}
	})
	t.Run("BadConfig", func(t *testing.T) {
		code, out := runToExit(t, bin, []string{"--metrics-listen=nonsense", "--shutdown-grace=-1s"}, []string{"PETREL_LOG_FORMAT=xml"})
		if code == 0 {
			t.Fatalf("exit code 0 with a bad config:\n%s", out)
		}
		for _, want := range []string{
			`--metrics-listen: "nonsense" is not host:port`,
			"--shutdown-grace: must be a positive duration",
			`--log-format: "xml" is not one of`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		code, out = runToExit(t, bin, []string{"--check-config", "--metrics-listen=127.0.0.1:0"}, nil)
		if code != 0 || !strings.Contains(out, "configuration OK") {
			t.Fatalf("--check-config on a good config: %d\n%s", code, out)
		}
		code, out = runToExit(t, bin, []string{"--no-such-flag"}, nil)
		if code == 0 || !strings.Contains(out, "no-such-flag") {
			t.Fatalf("unknown flag: %d\n%s", code, out)
		}
	})
}

func runToExit(t testing.TB, bin string, args, env []string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run %s: %v", bin, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// grpcWaitForReady makes the first call wait for the connection instead of
// failing while it is being set up.
var grpcWaitForReady = grpc.WaitForReady(true)
