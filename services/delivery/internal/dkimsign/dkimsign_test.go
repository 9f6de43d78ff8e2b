package dkimsign_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/petrel-mail/petrel/services/delivery/internal/dkimsign"
	"github.com/petrel-mail/petrel/services/delivery/internal/dnsx"
	"github.com/petrel-mail/petrel/services/delivery/internal/dnsx/dnstest"
	"github.com/petrel-mail/petrel/services/delivery/internal/route"
	"github.com/petrel-mail/petrel/services/delivery/internal/smtpout"
)

// A message with bare LFs, a line starting with a dot, MIME headers, a
// Sender, and repeated To headers.
const message = "From: Alice <alice@example.com>\n" +
	"Sender: alice@example.com\r\n" +
	"To: bob@example.org\r\n" +
	"To: carol@example.org\r\n" +
	"Subject: Quarterly\r\n  report\r\n" +
	"Date: Wed, 25 Nov 2026 12:00:00 +0000\r\n" +
	"Message-ID: <1@example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hello Bob,\n.leading dot\r\n\r\ntrailing spaces   \r\n\r\n\r\n"

func open(s string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
}

type setup struct {
	dns    *dnstest.Server
	client *dnsx.Client
}

func newSetup(t *testing.T) *setup {
	srv := dnstest.Start(t)
	return &setup{dns: srv, client: &dnsx.Client{Server: srv.Addr, Timeout: 2 * time.Second}}
}

// publish puts the key's record in DNS as the operator would.
func (s *setup) publish(t *testing.T, selector, domain string, key crypto.Signer) string {
	t.Helper()
	rec, err := dkimsign.Record(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	s.dns.AddTXT(dkimsign.RecordName(selector, domain), dkimsign.TXTStrings(rec)...)
	return rec
}

func (s *setup) verify(t *testing.T, signed []byte) []*dkim.Verification {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return s.client.LookupTXT(context.Background(), name) },
	})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(vs) != 1 {
		t.Fatalf("%d verifications", len(vs))
	}
	return vs
}

func signedBytes(t *testing.T, signer *dkimsign.Signer, msg string) []byte {
	t.Helper()
	op, size, err := signer.Opener(open(msg))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := op()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(b)) {
		t.Errorf("Opener says %d octets, the signed message has %d", size, len(b))
	}
	return b
}

func keys(t *testing.T) map[string]crypto.Signer {
	rsaKey, err := dkimsign.GenerateRSA()
	if err != nil {
		t.Fatal(err)
	}
	edKey, err := dkimsign.GenerateEd25519()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]crypto.Signer{"rsa": rsaKey, "ed25519": edKey}
}

func TestSignaturesVerifyAgainstPublishedRecord(t *testing.T) {
	s := newSetup(t)
	for algo, key := range keys(t) {
		t.Run(algo, func(t *testing.T) {
			rec := s.publish(t, "sel-"+algo, "example.com", key)
			if !strings.HasPrefix(rec, "v=DKIM1; k="+algo+"; p=") {
				t.Errorf("record %q", rec)
			}
			signer, err := dkimsign.NewSigner(dkimsign.Key{Domain: "example.com", Selector: "sel-" + algo, Signer: key})
			if err != nil {
				t.Fatal(err)
			}
			signed := signedBytes(t, signer, message)
			if bytes.Contains(bytes.ReplaceAll(signed, []byte("\r\n"), nil), []byte("\n")) ||
				bytes.Contains(bytes.ReplaceAll(signed, []byte("\r\n"), nil), []byte("\r")) {
				t.Fatal("signed message has a bare CR or LF")
			}
			if !bytes.HasPrefix(signed, []byte("DKIM-Signature: ")) {
				t.Fatalf("signature is not the first field: %q", signed[:40])
			}
			v := s.verify(t, signed)[0]
			if v.Err != nil || v.Domain != "example.com" {
				t.Fatalf("verification: %+v", v)
			}
			// Oversigning: one more From/To/Subject than present; Sender
			// signed once, not oversigned.
			count := func(k string) int {
				n := 0
				for _, h := range v.HeaderKeys {
					if strings.EqualFold(h, k) {
						n++
					}
				}
				return n
			}
			for k, want := range map[string]int{"From": 2, "To": 3, "Subject": 2, "Date": 2, "Message-ID": 2,
				"Cc": 1, "Reply-To": 1, "MIME-Version": 2, "Content-Type": 2, "Content-Transfer-Encoding": 1, "Sender": 1} {
				if got := count(k); got != want {
					t.Errorf("h= lists %s %d times, want %d (h=%v)", k, got, want, v.HeaderKeys)
				}
			}

			// What breaks the signature and what does not.
			sigEnd := bytes.Index(signed, []byte("From: "))
			sig, orig := signed[:sigEnd], signed[sigEnd:]
			tamper := map[string][]byte{
				"second From":      concat(sig, []byte("From: mallory@evil.example\r\n"), orig),
				"added Cc":         concat(sig, []byte("Cc: eve@evil.example\r\n"), orig),
				"added Reply-To":   concat(sig, []byte("Reply-To: eve@evil.example\r\n"), orig),
				"new Content-Type": concat(sig, []byte("Content-Type: text/html\r\n"), orig),
				"changed body":     bytes.Replace(signed, []byte("Hello Bob"), []byte("Hello Eve"), 1),
			}
			for name, m := range tamper {
				if v := s.verify(t, m)[0]; v.Err == nil {
					t.Errorf("%s: signature still verifies", name)
				}
			}
			// A mailing list adding Sender, or a relay adding a
			// Received field, keeps the signature valid.
			for name, m := range map[string][]byte{
				"added Sender":   concat(sig, []byte("Sender: list@lists.example\r\n"), orig),
				"added Received": concat([]byte("Received: from x by y; Wed, 25 Nov 2026 12:00:01 +0000\r\n"), signed),
			} {
				if v := s.verify(t, m)[0]; v.Err != nil {
					t.Errorf("%s: %v", name, v.Err)
				}
			}
		})
	}
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// TestSignatureVerifiesAsReceived signs a message, sends it with smtpout
// to a go-smtp server and verifies what the server received: the bytes
// signed are the bytes sent, dot-stuffing and CRLF included.
func TestSignatureVerifiesAsReceived(t *testing.T) {
	s := newSetup(t)
	key := keys(t)["rsa"]
	s.publish(t, "mail", "example.com", key)
	signer, err := dkimsign.NewSigner(dkimsign.Key{Domain: "example.com", Selector: "mail", Signer: key})
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var got []byte
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sink{onData: func(b []byte) { mu.Lock(); got = b; mu.Unlock() }}, nil
	}))
	srv.Domain = "mx.test"
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port, _ := strconv.Atoi(strings.TrimPrefix(ln.Addr().String(), "127.0.0.2:"))
	s.dns.Add(t, "example.org. IN MX 10 mx.example.org.", "mx.example.org. IN A 127.0.0.2")

	r := &route.Router{Resolver: s.client, Port: port}
	rt, err := r.Route(context.Background(), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := smtpout.New(smtpout.Options{EHLOName: "out.example.com", CommandTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	op, _, err := signer.Opener(open(message))
	if err != nil {
		t.Fatal(err)
	}
	res := tr.Deliver(context.Background(), rt, &smtpout.Message{From: "alice@example.com",
		Recipients: []smtpout.Recipient{{Address: "bob@example.org"}}, Open: op})
	if res[0].Status != smtpout.Delivered {
		t.Fatalf("%+v", res[0])
	}
	mu.Lock()
	defer mu.Unlock()
	if v := s.verify(t, got)[0]; v.Err != nil {
		t.Fatalf("received message does not verify: %v\n%s", v.Err, got)
	}
	if !bytes.Contains(got, []byte("\r\n.leading dot\r\n")) {
		t.Error("dot-stuffed line not restored")
	}
}

type sink struct{ onData func([]byte) }

func (*sink) Reset()                               {}
func (*sink) Logout() error                        { return nil }
func (*sink) Mail(string, *smtp.MailOptions) error { return nil }
func (*sink) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *sink) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.onData(b)
	return err
}

func TestRecordFormat(t *testing.T) {
	for algo, key := range keys(t) {
		rec, err := dkimsign.Record(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		parts := dkimsign.TXTStrings(rec)
		if strings.Join(parts, "") != rec {
			t.Errorf("%s: strings do not concatenate to the record", algo)
		}
		for _, p := range parts {
			if len(p) > 255 {
				t.Errorf("%s: string of %d octets", algo, len(p))
			}
		}
		if algo == "rsa" && len(parts) < 2 {
			t.Errorf("RSA 2048 record of %d octets in %d strings", len(rec), len(parts))
		}
		if algo == "ed25519" && (len(parts) != 1 || len(rec) != len("v=DKIM1; k=ed25519; p=")+44) {
			t.Errorf("Ed25519 record %q", rec)
		}
		zone := dkimsign.ZoneText(rec)
		if !strings.HasPrefix(zone, `"v=DKIM1; k=`) || strings.Count(zone, `"`) != 2*len(parts) {
			t.Errorf("zone text %s", zone)
		}
	}
	if got := dkimsign.RecordName("s1", "example.com."); got != "s1._domainkey.example.com" {
		t.Errorf("RecordName = %s", got)
	}
}

func TestKeyStorageRoundTrip(t *testing.T) {
	for algo, key := range keys(t) {
		pemBytes, err := dkimsign.MarshalPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		back, err := dkimsign.ParsePrivateKey(pemBytes)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := dkimsign.Record(key.Public())
		b, _ := dkimsign.Record(back.Public())
		if a != b {
			t.Errorf("%s: key changed in a round trip", algo)
		}
	}
	if _, err := dkimsign.ParsePrivateKey([]byte("junk")); err == nil {
		t.Error("junk parsed as a key")
	}
}

func TestWeakOrIncompleteKeysRefused(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dkimsign.NewSigner(dkimsign.Key{Domain: "example.com", Selector: "s", Signer: weak}); err == nil {
		t.Error("1024-bit RSA key accepted")
	}
	ed, _ := dkimsign.GenerateEd25519()
	if _, err := dkimsign.NewSigner(dkimsign.Key{Domain: "", Selector: "s", Signer: ed}); err == nil {
		t.Error("key without domain accepted")
	}
}

func TestHugeHeaderRefused(t *testing.T) {
	ed, _ := dkimsign.GenerateEd25519()
	signer, _ := dkimsign.NewSigner(dkimsign.Key{Domain: "example.com", Selector: "s", Signer: ed})
	huge := "From: a@example.com\r\nX-Junk: " + strings.Repeat("x", dkimsign.MaxHeaderBytes) + "\r\n\r\nbody\r\n"
	if _, err := signer.Sign(strings.NewReader(huge)); err != dkimsign.ErrHeaderTooLarge {
		t.Errorf("err = %v", err)
	}
}
