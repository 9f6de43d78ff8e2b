package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultSelfSignedHosts are the names a development certificate covers
// when none are given.
var DefaultSelfSignedHosts = []string{"localhost", "127.0.0.1", "::1"}

// SelfSignedOptions describe a development certificate.
type SelfSignedOptions struct {
	// Hosts are DNS names (wildcards allowed) and IP literals to put in the
	// subjectAltName (DefaultSelfSignedHosts if empty).
	Hosts []string
	// ValidFor is the lifetime (one year if zero).
	ValidFor time.Duration
	// Now is the issue time (time.Now if nil); injected for tests.
	Now func() time.Time
}

// SelfSigned is a generated certificate and its ECDSA P-256 key.
type SelfSigned struct {
	CertPEM, KeyPEM []byte
	Pair            tls.Certificate // Leaf is set
}

// GenerateSelfSigned makes a self-signed certificate for development and
// tests. It is its own trust anchor: give CertPool() to clients, or the
// CertPEM file to tools (curl --cacert, openssl s_client -CAfile).
func GenerateSelfSigned(opts SelfSignedOptions) (*SelfSigned, error) {
	hosts := opts.Hosts
	if len(hosts) == 0 {
		hosts = DefaultSelfSignedHosts
	}
	validFor := opts.ValidFor
	if validFor <= 0 {
		validFor = 365 * 24 * time.Hour
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}

	var (
		dnsNames []string
		ips      []net.IP
		errs     []error
	)
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
			errs = append(errs, errors.New("empty host name"))
		case net.ParseIP(h) != nil:
			ips = append(ips, net.ParseIP(h))
		case strings.ContainsAny(h, " /:@"):
			errs = append(errs, fmt.Errorf("%q is neither a DNS name nor an IP address", h))
		default:
			dnsNames = append(dnsNames, strings.ToLower(strings.TrimSuffix(h, ".")))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("tlsutil: self-signed certificate: %w", errors.Join(errs...))
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: generate key: %w", err)
	}
	// RFC 5280 §4.1.2.2: positive, unique, at most 20 octets.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tlsutil: generate serial: %w", err)
	}
	serial.Add(serial, big.NewInt(1))
	issued := now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The common name is only for humans reading the certificate;
		// clients match the subjectAltName (RFC 6125 §6.4.4).
		Subject:   pkix.Name{CommonName: strings.TrimSpace(hosts[0]), Organization: []string{"Petrel development"}},
		NotBefore: issued.Add(-time.Hour), // tolerate clock skew
		NotAfter:  issued.Add(validFor),
		// Being its own CA lets tools that insist on a CA in their trust
		// store (OpenSSL) accept it as well as Go.
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: encode key: %w", err)
	}
	s := &SelfSigned{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	s.Pair, err = tls.X509KeyPair(s.CertPEM, s.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: self-signed pair: %w", err)
	}
	return s, nil
}

// CertPool returns a pool that trusts only this certificate, for clients.
func (s *SelfSigned) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.Pair.Leaf)
	return pool
}

// WriteFiles writes the certificate (mode 0644) and key (mode 0600). Each
// file is written to a temporary name and renamed into place, so a reader
// (such as a CertReloader) never sees half a file.
func (s *SelfSigned) WriteFiles(certFile, keyFile string) error {
	if err := writeFileAtomic(keyFile, s.KeyPEM, 0o600); err != nil {
		return fmt.Errorf("tlsutil: write key: %w", err)
	}
	if err := writeFileAtomic(certFile, s.CertPEM, 0o644); err != nil {
		return fmt.Errorf("tlsutil: write certificate: %w", err)
	}
	return nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	// CreateTemp makes the file 0600, so the key is never readable by
	// others, not even briefly.
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
