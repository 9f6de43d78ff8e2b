// Package dkimsign signs outbound mail with DKIM (RFC 6376) using
// github.com/emersion/go-msgauth, with RSA-SHA256 (2048-bit keys, RFC 8301)
// or Ed25519-SHA256 (RFC 8463) keys, and produces the DNS TXT record a
// domain publishes for its key.
//
// What is signed is exactly what smtpout sends (SMTP-LESSONS 16): both
// read the message through crlf.NewReader, and the signature is the first
// header field, added after every other change. The message is never held
// in memory: Signer.Opener reads it once to hash the body and the header,
// then returns an opener that streams the signature followed by the
// message again from its source (the blob store).
//
// Header selection follows RFC 6376 §5.4 and SMTP-LESSONS 17: From and the
// core headers are oversigned (listed once more than they occur, so none
// can be added later), the MIME structure headers are signed, and Sender
// is signed but not oversigned, because mailing lists legitimately add
// one.
package dkimsign

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/petrel-mail/petrel/services/delivery/internal/crlf"
)

// MaxHeaderBytes bounds the header block read into memory for signing.
const MaxHeaderBytes = 1 << 20

// ErrHeaderTooLarge: the message header is over MaxHeaderBytes.
var ErrHeaderTooLarge = errors.New("dkimsign: message header too large")

// oversigned header fields: listed one more time than they occur.
var oversigned = []string{
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding",
}

// signedIfPresent header fields: listed as often as they occur.
var signedIfPresent = []string{
	"Sender", "Content-Disposition", "Content-ID", "Content-Description",
	"Content-Language", "List-Id", "List-Help", "List-Unsubscribe",
	"List-Unsubscribe-Post", "List-Subscribe", "List-Post", "List-Owner",
	"List-Archive", "Resent-Date", "Resent-From", "Resent-To", "Resent-Cc",
	"Resent-Message-ID", "Autocrypt", "Feedback-ID",
}

// Key is a domain's signing key.
type Key struct {
	// Domain is the d= tag: the signing domain (SDID).
	Domain string
	// Selector is the s= tag: the key's name under _domainkey.
	Selector string
	// Signer is an *rsa.PrivateKey (at least 2048 bits) or an
	// ed25519.PrivateKey.
	Signer crypto.Signer
}

// Signer signs messages with one key.
type Signer struct {
	key Key
}

// NewSigner checks key and returns a Signer.
func NewSigner(key Key) (*Signer, error) {
	if key.Domain == "" || key.Selector == "" {
		return nil, errors.New("dkimsign: key needs a domain and a selector")
	}
	switch pub := key.Signer.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return nil, fmt.Errorf("dkimsign: RSA key of %d bits; at least 2048 are needed", pub.N.BitLen())
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("dkimsign: unsupported key type %T", pub)
	}
	return &Signer{key: key}, nil
}

// Sign reads a whole message and returns its DKIM-Signature header field,
// "DKIM-Signature: ...\r\n", valid for the CRLF-normalized message with
// the field prepended.
func (s *Signer) Sign(r io.Reader) (string, error) {
	sig, _, err := s.sign(r)
	return sig, err
}

// sign is Sign that also returns the length of the CRLF-normalized
// message it read.
func (s *Signer) sign(r io.Reader) (string, int64, error) {
	cr := &countingReader{r: crlf.NewReader(r)}
	br := bufio.NewReaderSize(cr, 32*1024)
	header, err := readHeader(br)
	if err != nil {
		return "", 0, err
	}
	ds, err := dkim.NewSigner(&dkim.SignOptions{
		Domain:                 s.key.Domain,
		Selector:               s.key.Selector,
		Signer:                 s.key.Signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             headerKeys(header),
	})
	if err != nil {
		return "", 0, fmt.Errorf("dkimsign: %w", err)
	}
	if _, err := ds.Write(header); err != nil {
		ds.Close()
		return "", 0, fmt.Errorf("dkimsign: hashing header: %w", err)
	}
	if _, err := io.Copy(ds, br); err != nil {
		ds.Close()
		return "", 0, fmt.Errorf("dkimsign: hashing body: %w", err)
	}
	if err := ds.Close(); err != nil {
		return "", 0, fmt.Errorf("dkimsign: signing: %w", err)
	}
	return ds.Signature(), cr.n, nil
}

// Opener signs the message that open returns (reading it once) and
// returns an opener for the signed message: the DKIM-Signature field
// followed by the message, CRLF-normalized, read again from open; and the
// signed message's size. Pass them as smtpout.Message.Open and Size.
func (s *Signer) Opener(open func() (io.ReadCloser, error)) (func() (io.ReadCloser, error), int64, error) {
	rc, err := open()
	if err != nil {
		return nil, 0, fmt.Errorf("dkimsign: opening message: %w", err)
	}
	sig, n, err := s.sign(rc)
	rc.Close()
	if err != nil {
		return nil, 0, err
	}
	return func() (io.ReadCloser, error) {
		rc, err := open()
		if err != nil {
			return nil, err
		}
		return readCloser{Reader: io.MultiReader(strings.NewReader(sig), crlf.NewReader(rc)), Closer: rc}, nil
	}, int64(len(sig)) + n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type readCloser struct {
	io.Reader
	io.Closer
}

// readHeader returns the header block including the empty line that ends
// it (or the whole input if there is no body).
func readHeader(br *bufio.Reader) ([]byte, error) {
	var buf bytes.Buffer
	for {
		line, err := br.ReadSlice('\n')
		buf.Write(line)
		if buf.Len() > MaxHeaderBytes {
			return nil, ErrHeaderTooLarge
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, fmt.Errorf("dkimsign: reading header: %w", err)
		}
		if string(line) == "\r\n" {
			return buf.Bytes(), nil
		}
	}
}

// headerKeys chooses the h= list for a header block.
func headerKeys(header []byte) []string {
	counts := map[string]int{}
	for _, line := range strings.Split(string(header), "\r\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if name, _, ok := strings.Cut(line, ":"); ok {
			counts[strings.ToLower(strings.TrimSpace(name))]++
		}
	}
	var keys []string
	for _, k := range oversigned {
		for range counts[strings.ToLower(k)] + 1 {
			keys = append(keys, k)
		}
	}
	for _, k := range signedIfPresent {
		for range counts[strings.ToLower(k)] {
			keys = append(keys, k)
		}
	}
	return keys
}

// GenerateRSA makes a 2048-bit RSA key (RFC 8301 §3.2).
func GenerateRSA() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, 2048)
}

// GenerateEd25519 makes an Ed25519 key (RFC 8463).
func GenerateEd25519() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// MarshalPrivateKey encodes a key as PKCS #8 PEM, for storage (encrypted
// at rest by the store).
func MarshalPrivateKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("dkimsign: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey decodes MarshalPrivateKey's output.
func ParsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("dkimsign: not a PEM private key")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("dkimsign: %w", err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("dkimsign: unsupported key type %T", key)
	}
}

// RecordName is where the key's TXT record lives:
// selector._domainkey.domain (RFC 6376 §3.6.2.1).
func RecordName(selector, domain string) string {
	return selector + "._domainkey." + strings.TrimSuffix(domain, ".")
}

// Record is the TXT record text to publish for the key's public half:
// "v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>" (RFC 6376 §3.6.1) or
// "v=DKIM1; k=ed25519; p=<base64 raw 32-octet key>" (RFC 8463 §4.2).
func Record(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", fmt.Errorf("dkimsign: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	default:
		return "", fmt.Errorf("dkimsign: unsupported public key type %T", pub)
	}
}

// TXTStrings splits a record into character-strings of at most 255
// octets, the most one DNS character-string holds (RFC 1035 §3.3); a
// verifier concatenates them (RFC 6376 §3.6.2.2).
func TXTStrings(record string) []string {
	var out []string
	for len(record) > 255 {
		out = append(out, record[:255])
		record = record[255:]
	}
	return append(out, record)
}

// ZoneText is the record in zone-file syntax, each string quoted, for an
// operator to paste: "v=DKIM1; k=rsa; " "p=...".
func ZoneText(record string) string {
	parts := TXTStrings(record)
	for i, p := range parts {
		parts[i] = `"` + p + `"`
	}
	return strings.Join(parts, " ")
}
