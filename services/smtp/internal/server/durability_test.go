package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/petrel-mail/petrel/platform/blob/fsblob"
	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/natsx/embedded"
)

func sendMX(addr, subject string) (string, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		return "", err
	}
	if err := c.Mail("sender@remote.test", nil); err != nil {
		return "", err
	}
	if err := c.Rcpt("bob@example.com", nil); err != nil {
		return "", err
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(w, "Subject: %s\r\n\r\nbody\r\n", subject)
	err = w.Close()
	if err != nil {
		return "", err
	}
	return "ok", c.Quit()
}

func smtpCode(err error) int {
	if se, ok := err.(*smtp.SMTPError); ok {
		return se.Code
	}
	return 0
}

// TestEvery250IsDurable sends a concurrent batch and checks that every 250
// has exactly one object and one queue entry, and nothing else exists.
func TestEvery250IsDurable(t *testing.T) {
	e := newEnv(t, envConfig{blob: newFSBlob(t, t.TempDir())})
	const n = 30
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := sendMX(e.addr[MX], "batch "+strconv.Itoa(i))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	entries := e.queued()
	keys := e.objects("tenant-a")
	if len(entries) != n || len(keys) != n {
		t.Fatalf("%d entries and %d objects for %d accepted messages", len(entries), len(keys), n)
	}
	have := map[string]bool{}
	for _, k := range keys {
		have[k] = true
	}
	for _, qe := range entries {
		if !have[qe.BlobKey] {
			t.Fatalf("entry %s points at missing object %s", qe.QueueId, qe.BlobKey)
		}
		// The entry's copy of a small message is the object, byte for
		// byte (delivery gives it to the store instead of a read).
		obj := e.object(qe.BlobKey)
		sum := sha256.Sum256([]byte(obj))
		if string(qe.Content) != obj || qe.Sha256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("entry %s: content %d bytes, object %d bytes, sha256 %s", qe.QueueId, len(qe.Content), len(obj), qe.Sha256)
		}
	}
}

// TestLargeMessageEntryHasNoContent: past ingest.MaxInlineContent the
// queue entry only points at the object.
func TestLargeMessageEntryHasNoContent(t *testing.T) {
	e := newEnv(t, envConfig{blob: newFSBlob(t, t.TempDir())})
	c, err := smtp.Dial(e.addr[MX])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("sender@remote.test", []string{"bob@example.com"},
		strings.NewReader("Subject: big\r\n\r\n"+strings.Repeat(strings.Repeat("x", 98)+"\r\n", 700))); err != nil {
		t.Fatal(err)
	}
	entries := e.queued()
	if len(entries) != 1 || len(entries[0].Content) != 0 || entries[0].Size <= 64<<10 {
		t.Fatalf("entries %d, content %d bytes, size %d", len(entries), len(entries[0].Content), entries[0].Size)
	}
}

func newFSBlob(t *testing.T, dir string) *fsblob.Store {
	t.Helper()
	s, err := fsblob.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestNATSDownGives451AndRecovers stops an embedded NATS, expects 451 and
// no object left, restarts it on the same port and directory and expects
// 250 again, without restarting anything of ours.
func TestNATSDownGives451AndRecovers(t *testing.T) {
	storeDir := t.TempDir()
	ns, err := embedded.Start(embedded.Config{StoreDir: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	url := ns.ClientURL()
	_, portStr, _ := net.SplitHostPort(strings.TrimPrefix(url, "nats://"))
	port, _ := strconv.Atoi(portStr)
	defer func() { ns.Shutdown() }()

	blobDir := t.TempDir()
	e := newEnv(t, envConfig{natsURL: url, blob: newFSBlob(t, blobDir), publishTO: 500 * time.Millisecond})
	if _, err := sendMX(e.addr[MX], "before"); err != nil {
		t.Fatal(err)
	}
	ns.Shutdown()
	_, err = sendMX(e.addr[MX], "during")
	if smtpCode(err) != 451 {
		t.Fatalf("with NATS down: %v, want 451", err)
	}
	if keys := e.objects("tenant-a"); len(keys) != 1 {
		t.Fatalf("objects %v: the refused message's object must be deleted", keys)
	}
	ns, err = embedded.Start(embedded.Config{StoreDir: storeDir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := natsx.WaitConnected(ctx, e.nc); err != nil {
		t.Fatal(err)
	}
	if _, err := sendMX(e.addr[MX], "after"); err != nil {
		t.Fatalf("after NATS came back: %v", err)
	}
	if n, k := len(e.queued()), len(e.objects("tenant-a")); n != 2 || k != 2 {
		t.Fatalf("%d entries, %d objects; want 2 and 2", n, k)
	}
}

// TestBlobDownGives451AndRecovers breaks the filesystem store (its root
// replaced by a file, which even root cannot write under), expects 451 and
// no queue entry, then repairs it and expects 250.
func TestBlobDownGives451AndRecovers(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "blobs")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envConfig{blob: newFSBlob(t, root)})
	if _, err := sendMX(e.addr[MX], "before"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(root, root+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := sendMX(e.addr[MX], "during")
	if smtpCode(err) != 451 {
		t.Fatalf("with storage down: %v, want 451", err)
	}
	if n := len(e.queued()); n != 1 {
		t.Fatalf("%d entries: nothing may be queued without its object", n)
	}
	if err := os.Remove(root); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(root+".away", root); err != nil {
		t.Fatal(err)
	}
	if _, err := sendMX(e.addr[MX], "after"); err != nil {
		t.Fatalf("after storage came back: %v", err)
	}
	if n, k := len(e.queued()), len(e.objects("tenant-a")); n != 2 || k != 2 {
		t.Fatalf("%d entries, %d objects; want 2 and 2", n, k)
	}
}
