// Package dnstest runs a real authoritative-style DNS server on loopback
// for tests of routing, DKIM and anything else that resolves names. It
// answers over UDP and TCP from records given in zone-file syntax
// (RFC 1035 §5), so tests exercise the real wire protocol through
// github.com/miekg/dns rather than a stubbed resolver.
package dnstest

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server is a DNS server on 127.0.0.1 (UDP and TCP on the same port).
type Server struct {
	// Addr is host:port for dnsx.Client.Server.
	Addr string

	mu       sync.Mutex
	records  map[string][]dns.RR // key: lower-case FQDN
	servfail map[string]bool
	truncate map[string]bool // answer over UDP with TC=1 and no records
	queries  map[string]int  // "name TYPE proto" -> count
}

// Start runs a server until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		records:  map[string][]dns.RR{},
		servfail: map[string]bool{},
		truncate: map[string]bool{},
		queries:  map[string]int{},
	}
	// UDP and TCP must share a port; the TCP port that matches a free UDP
	// port may be taken by another process, so try a few UDP ports.
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for attempt := 0; ; attempt++ {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("dnstest: listen udp: %v", err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			break
		}
		pc.Close()
		if attempt == 20 {
			t.Fatalf("dnstest: listen tcp on the UDP port: %v", err)
		}
	}
	s.Addr = pc.LocalAddr().String()

	udpStarted := make(chan struct{})
	tcpStarted := make(chan struct{})
	udp := &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: func() { close(udpStarted) }}
	tcp := &dns.Server{Listener: ln, Handler: s, NotifyStartedFunc: func() { close(tcpStarted) }}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	<-udpStarted
	<-tcpStarted
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
	return s
}

// Add adds records in zone-file syntax, e.g.
// "example.org. 300 IN MX 10 mx1.example.org.". It fails the test on a
// syntax error.
func (s *Server) Add(t testing.TB, lines ...string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("dnstest: bad record %q: %v", l, err)
		}
		name := strings.ToLower(rr.Header().Name)
		s.records[name] = append(s.records[name], rr)
	}
}

// AddTXT adds a TXT record whose value is split into character-strings
// as given (each at most 255 octets), without zone-file quoting rules.
func (s *Server) AddTXT(name string, strs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fq := strings.ToLower(dns.Fqdn(name))
	rr := &dns.TXT{Hdr: dns.RR_Header{Name: fq, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}, Txt: strs}
	s.records[fq] = append(s.records[fq], rr)
}

// ServFail makes every query for name answer SERVFAIL.
func (s *Server) ServFail(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.servfail[strings.ToLower(dns.Fqdn(name))] = true
}

// TruncateUDP makes UDP answers for name come back truncated and empty, so
// a client must retry over TCP to see the records.
func (s *Server) TruncateUDP(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncate[strings.ToLower(dns.Fqdn(name))] = true
}

// Queries reports how many queries for name and type ("MX", "A"...) came
// in over proto ("udp" or "tcp").
func (s *Server) Queries(name, typ, proto string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[strings.ToLower(dns.Fqdn(name))+" "+typ+" "+proto]
}

// ServeDNS implements dns.Handler. A name with any record is treated as
// existing: other types answer NOERROR with no data; unknown names answer
// NXDOMAIN.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	_, isUDP := w.RemoteAddr().(*net.UDPAddr)
	proto := "tcp"
	if isUDP {
		proto = "udp"
	}

	s.mu.Lock()
	s.queries[name+" "+dns.TypeToString[q.Qtype]+" "+proto]++
	rrs := s.records[name]
	servfail := s.servfail[name]
	truncate := s.truncate[name] && isUDP
	s.mu.Unlock()

	switch {
	case servfail:
		m.Rcode = dns.RcodeServerFailure
	case truncate:
		m.Truncated = true
	case len(rrs) == 0:
		m.Rcode = dns.RcodeNameError
	default:
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
	}
	w.WriteMsg(m)
}
