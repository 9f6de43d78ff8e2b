package msgauth

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// testDNS is a real authoritative DNS server on loopback, UDP and TCP on the
// same port, serving a zone the test builds. It truncates UDP answers that
// do not fit the client's buffer, as a real server does.
type testDNS struct {
	addr string

	mu       sync.Mutex
	records  map[string][]dns.RR // by lower-case FQDN
	servfail map[string]bool

	tcpQueries atomic.Int64
}

func newTestDNS(t *testing.T) *testDNS {
	t.Helper()
	d := &testDNS{records: map[string][]dns.RR{}, servfail: map[string]bool{}}

	// UDP and TCP must share a port, since a resolver is configured with
	// one address. Another process may take the TCP port first: try again.
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen udp: %v", err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if attempt == 20 {
			t.Fatalf("listen tcp on the udp port: %v", err)
		}
	}
	d.addr = pc.LocalAddr().String()

	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: dns.HandlerFunc(d.serve)},
		{Listener: ln, Handler: dns.HandlerFunc(d.serve)},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		errc := make(chan error, 1)
		go func() { errc <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-errc:
			t.Fatalf("dns server: %v", err)
		}
		t.Cleanup(func() { srv.Shutdown() })
	}
	return d
}

func (d *testDNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		w.WriteMsg(resp)
		return
	}
	if _, tcp := w.LocalAddr().(*net.TCPAddr); tcp {
		d.tcpQueries.Add(1)
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)

	d.mu.Lock()
	fail := d.servfail[name]
	rrs := d.records[name]
	exists := len(rrs) > 0
	if !exists {
		// An empty non-terminal (such as _domainkey.example.test) exists.
		for n := range d.records {
			if strings.HasSuffix(n, "."+name) {
				exists = true
				break
			}
		}
	}
	d.mu.Unlock()

	switch {
	case fail:
		resp.Rcode = dns.RcodeServerFailure
	case !exists:
		resp.Rcode = dns.RcodeNameError
	default:
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				resp.Answer = append(resp.Answer, dns.Copy(rr))
			}
		}
	}
	if _, udp := w.LocalAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		resp.Truncate(size)
	}
	w.WriteMsg(resp)
}

// add adds records in zone file syntax, e.g. "example.test. A 192.0.2.1".
func (d *testDNS) add(t *testing.T, lines ...string) {
	t.Helper()
	for _, line := range lines {
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("bad test record %q: %v", line, err)
		}
		d.addRR(rr)
	}
}

func (d *testDNS) addRR(rr dns.RR) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := strings.ToLower(rr.Header().Name)
	d.records[name] = append(d.records[name], rr)
}

// txt adds a TXT record of any length, split into strings of at most 255
// octets as RFC 1035 §3.3.14 requires.
func (d *testDNS) txt(name, value string) {
	var chunks []string
	for len(value) > 255 {
		chunks = append(chunks, value[:255])
		value = value[255:]
	}
	chunks = append(chunks, value)
	d.addRR(&dns.TXT{
		Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
		Txt: chunks,
	})
}

// fail makes the server answer SERVFAIL for name.
func (d *testDNS) fail(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.servfail[strings.ToLower(dns.Fqdn(name))] = true
}

func (d *testDNS) resolver() *DNSResolver {
	return NewDNSResolver(d.addr, 0)
}

func itoa(i int) string { return strconv.Itoa(i) }
