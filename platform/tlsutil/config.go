package tlsutil

import "crypto/tls"

// ServerConfig returns a server tls.Config that takes its certificate from
// getCertificate on every handshake (use CertReloader.GetCertificate so
// rotations apply without a restart).
//
// TLS 1.2 is the floor: RFC 8996 deprecates 1.0 and 1.1, and RFC 8314 §4.1
// asks mail services for at least 1.2. Cipher suites and curves are left to
// Go's defaults, which only offer forward-secret AEAD suites for 1.2 and
// are kept current with each Go release; pinning a list here would freeze it.
func ServerConfig(getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: getCertificate,
	}
}
