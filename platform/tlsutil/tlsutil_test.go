package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// safety bounds waits that should end quickly; reaching it means a bug.
const safety = 10 * time.Second

type reloadEvent struct {
	leaf *x509.Certificate
	err  error
}

func newSelfSigned(t *testing.T) *SelfSigned {
	t.Helper()
	s, err := GenerateSelfSigned(SelfSignedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startReloader writes a first pair into dir and serves it over TLS on
// loopback. It returns the server address and the stream of reload events.
func startReloader(t *testing.T, certFile, keyFile string, opts ReloaderOptions) (*CertReloader, string, <-chan reloadEvent) {
	t.Helper()
	events := make(chan reloadEvent, 64)
	opts.OnReload = func(leaf *x509.Certificate, err error) { events <- reloadEvent{leaf, err} }
	r, err := NewCertReloader(certFile, keyFile, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r, serveTLS(t, ServerConfig(r.GetCertificate)), events
}

func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(safety))
			// Handshake errors are the client's to observe.
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// servedSerial does a real handshake and returns the server's leaf serial.
func servedSerial(t *testing.T, addr string, roots *x509.CertPool) *big.Int {
	t.Helper()
	d := &net.Dialer{Timeout: safety}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// waitSerial waits for a successful reload to the given certificate.
// Failed reloads on the way are expected when the two files are replaced
// one after the other.
func waitSerial(t *testing.T, events <-chan reloadEvent, want *big.Int) {
	t.Helper()
	deadline := time.After(safety)
	for {
		select {
		case ev := <-events:
			if ev.err != nil {
				t.Logf("intermediate reload error: %v", ev.err)
				continue
			}
			if ev.leaf.SerialNumber.Cmp(want) == 0 {
				return
			}
		case <-deadline:
			t.Fatalf("no reload to serial %v", want)
		}
	}
}

func pool(certs ...*SelfSigned) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c.Pair.Leaf)
	}
	return p
}

func TestReloadOnFileReplace(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first, second := newSelfSigned(t), newSelfSigned(t)
	if err := first.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	// A poll interval of an hour means only the watcher can notice.
	r, addr, events := startReloader(t, certFile, keyFile, ReloaderOptions{PollInterval: time.Hour})
	roots := pool(first, second)
	if got := servedSerial(t, addr, roots); got.Cmp(first.Pair.Leaf.SerialNumber) != 0 {
		t.Fatalf("serving %v, want first %v", got, first.Pair.Leaf.SerialNumber)
	}

	if err := second.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, events, second.Pair.Leaf.SerialNumber)
	if got := servedSerial(t, addr, roots); got.Cmp(second.Pair.Leaf.SerialNumber) != 0 {
		t.Fatalf("serving %v after reload, want second %v", got, second.Pair.Leaf.SerialNumber)
	}
	if r.Certificate().Leaf.SerialNumber.Cmp(second.Pair.Leaf.SerialNumber) != 0 {
		t.Error("Certificate() not updated")
	}
}

// TestReloadKubernetesSymlinkSwap replays how the kubelet updates a Secret
// volume: the files are symlinks through "..data", which is atomically
// re-pointed at a new timestamped directory. The file names never change.
func TestReloadKubernetesSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	first, second := newSelfSigned(t), newSelfSigned(t)
	writeVersion := func(name string, s *SelfSigned) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := s.WriteFiles(filepath.Join(dir, name, "tls.crt"), filepath.Join(dir, name, "tls.key")); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion("..2026_11_25_10_00_00.1", first)
	for _, link := range [][2]string{
		{"..2026_11_25_10_00_00.1", "..data"},
		{"..data/tls.crt", "tls.crt"},
		{"..data/tls.key", "tls.key"},
	} {
		if err := os.Symlink(link[0], filepath.Join(dir, link[1])); err != nil {
			t.Fatal(err)
		}
	}
	_, addr, events := startReloader(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), ReloaderOptions{PollInterval: time.Hour})
	roots := pool(first, second)
	if got := servedSerial(t, addr, roots); got.Cmp(first.Pair.Leaf.SerialNumber) != 0 {
		t.Fatal("not serving the first certificate")
	}

	writeVersion("..2026_11_25_11_00_00.2", second)
	if err := os.Symlink("..2026_11_25_11_00_00.2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2026_11_25_10_00_00.1")); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, events, second.Pair.Leaf.SerialNumber)
	if got := servedSerial(t, addr, roots); got.Cmp(second.Pair.Leaf.SerialNumber) != 0 {
		t.Fatal("not serving the second certificate after the swap")
	}
}

func TestReloadPollFallback(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first, second := newSelfSigned(t), newSelfSigned(t)
	if err := first.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	_, addr, events := startReloader(t, certFile, keyFile, ReloaderOptions{PollInterval: 10 * time.Millisecond, noWatch: true})
	if err := second.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, events, second.Pair.Leaf.SerialNumber)
	if got := servedSerial(t, addr, pool(first, second)); got.Cmp(second.Pair.Leaf.SerialNumber) != 0 {
		t.Fatal("not serving the second certificate")
	}
}

// TestReloadKeepsServingOnBadFiles: a broken update is reported and the
// previous certificate stays in use until a good one arrives.
func TestReloadKeepsServingOnBadFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first, second := newSelfSigned(t), newSelfSigned(t)
	if err := first.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	_, addr, events := startReloader(t, certFile, keyFile, ReloaderOptions{PollInterval: time.Hour})
	roots := pool(first, second)

	if err := writeFileAtomic(certFile, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.err == nil || !strings.Contains(ev.err.Error(), certFile) {
			t.Fatalf("reload event %v, want an error naming %s", ev.err, certFile)
		}
	case <-time.After(safety):
		t.Fatal("broken certificate not reported")
	}
	if got := servedSerial(t, addr, roots); got.Cmp(first.Pair.Leaf.SerialNumber) != 0 {
		t.Fatal("stopped serving the first certificate after a bad update")
	}

	if err := second.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, events, second.Pair.Leaf.SerialNumber)
	if got := servedSerial(t, addr, roots); got.Cmp(second.Pair.Leaf.SerialNumber) != 0 {
		t.Fatal("not serving the second certificate")
	}
}

func TestNewCertReloaderErrors(t *testing.T) {
	dir := t.TempDir()
	good, other := newSelfSigned(t), newSelfSigned(t)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert, key := write("good.crt", good.CertPEM), write("good.key", good.KeyPEM)
	otherKey := write("other.key", other.KeyPEM)
	garbage := write("garbage.pem", []byte("hello\n"))
	missing := filepath.Join(dir, "missing.pem")

	for _, tc := range []struct {
		name, cert, key string
		want            []string
	}{
		{"missing cert", missing, key, []string{"read certificate", missing, "no such file"}},
		{"missing key", cert, missing, []string{"read private key", missing, "no such file"}},
		{"garbage cert", garbage, key, []string{garbage, "failed to find any PEM data in certificate input"}},
		{"garbage key", cert, garbage, []string{garbage, "failed to find any PEM data in key input"}},
		{"key swapped with cert", key, cert, []string{"certificate input"}},
		{"mismatched key", cert, otherKey, []string{cert, otherKey, "private key does not match public key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewCertReloader(tc.cert, tc.key, ReloaderOptions{})
			if err == nil {
				r.Close()
				t.Fatal("bad pair accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestSelfSignedVerifiesForItsNames(t *testing.T) {
	s := newSelfSigned(t)
	leaf := s.Pair.Leaf
	key, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Fatalf("public key %T, want ECDSA P-256", leaf.PublicKey)
	}
	roots := s.CertPool()
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("does not verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "mail.example.org", Roots: roots}); err == nil {
		t.Error("verifies for a name it was not issued for")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: x509.NewCertPool()}); err == nil {
		t.Error("verifies without being trusted")
	}

	// A real handshake, addressed by IP as a client configured with
	// 127.0.0.1 would.
	addr := serveTLS(t, ServerConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &s.Pair, nil }))
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: safety}, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("handshake by IP: %v", err)
	}
	c.Close()
}

func TestSelfSignedOptions(t *testing.T) {
	issued := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s, err := GenerateSelfSigned(SelfSignedOptions{
		Hosts:    []string{"Mail.Example.Test.", "*.example.test", "2001:db8::25"},
		ValidFor: 48 * time.Hour,
		Now:      func() time.Time { return issued },
	})
	if err != nil {
		t.Fatal(err)
	}
	leaf := s.Pair.Leaf
	if !leaf.NotAfter.Equal(issued.Add(48 * time.Hour)) {
		t.Errorf("NotAfter %v", leaf.NotAfter)
	}
	for _, name := range []string{"mail.example.test", "imap.example.test", "2001:db8::25"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: s.CertPool(), CurrentTime: issued}); err != nil {
			t.Errorf("does not verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: s.CertPool(), CurrentTime: issued}); err == nil {
		t.Error("default names added although hosts were given")
	}

	_, err = GenerateSelfSigned(SelfSignedOptions{Hosts: []string{"ok.example", "", "http://bad"}})
	if err == nil || !strings.Contains(err.Error(), "empty host name") || !strings.Contains(err.Error(), `"http://bad"`) {
		t.Fatalf("bad hosts: %v", err)
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "dev.crt"), filepath.Join(dir, "dev.key")
	s := newSelfSigned(t)
	if err := s.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]os.FileMode{keyFile: 0o600, certFile: 0o644} {
		st, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", file, st.Mode().Perm(), want)
		}
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if pair.Leaf.SerialNumber.Cmp(s.Pair.Leaf.SerialNumber) != 0 {
		t.Error("files hold a different certificate")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if err := s.WriteFiles(filepath.Join(dir, "nodir", "a.crt"), keyFile); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

func TestServerConfigRefusesOldTLS(t *testing.T) {
	s := newSelfSigned(t)
	cfg := ServerConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &s.Pair, nil })
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("MinVersion %x", cfg.MinVersion)
	}
	addr := serveTLS(t, cfg)
	_, err := tls.DialWithDialer(&net.Dialer{Timeout: safety}, "tcp", addr, &tls.Config{
		RootCAs: s.CertPool(), ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11,
	})
	if err == nil {
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	// The server must be the one refusing, with a protocol_version alert
	// (RFC 8446 §6.2), not the client declining to try.
	if !strings.Contains(err.Error(), "remote error") || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("TLS 1.1 handshake failed for another reason: %v", err)
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: safety}, "tcp", addr, &tls.Config{
			RootCAs: s.CertPool(), ServerName: "localhost", MinVersion: v, MaxVersion: v,
		})
		if err != nil {
			t.Fatalf("TLS %x handshake: %v", v, err)
		}
		c.Close()
	}
}
