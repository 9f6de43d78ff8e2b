package e2e

import (
	"encoding/binary"
	"net"
	"testing"
)

// nxdomainServer answers every DNS query over UDP on loopback with
// NXDOMAIN (RFC 1035 §4.1.1, RCODE 3) and returns its address.
//
// The smtp service checks SPF, DKIM and DMARC on the MX listener; this
// machine has no internet, so its resolver answers NXDOMAIN for all of
// those names anyway, but it drops queries beyond about fifty in a few
// seconds and each dropped one costs the smtp service a five-second
// timeout. Pointing the deployment at this server (--dns-server) gives
// the same answers without making the tests measure that rate limit.
func nxdomainServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			if resp := nxdomain(buf[:n]); resp != nil {
				pc.WriteTo(resp, addr)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// nxdomain builds the NXDOMAIN reply to query: same ID and question, QR
// and RA set, RD copied, no records (the EDNS OPT record is left out,
// which RFC 6891 §7 allows a server that does not implement EDNS). It
// returns nil for anything but one standard query with one question.
func nxdomain(query []byte) []byte {
	if len(query) < 12 {
		return nil
	}
	flags := binary.BigEndian.Uint16(query[2:])
	if flags&0x8000 != 0 || flags&0x7800 != 0 || binary.BigEndian.Uint16(query[4:]) != 1 {
		return nil // a response, not QUERY, or not exactly one question
	}
	// The question: QNAME as labels up to the root label, QTYPE, QCLASS.
	i := 12
	for {
		if i >= len(query) {
			return nil
		}
		l := int(query[i])
		if l == 0 {
			i++
			break
		}
		if l&0xC0 != 0 {
			return nil // no compression in a question of its own
		}
		i += 1 + l
	}
	if i+4 > len(query) {
		return nil
	}
	i += 4
	resp := make([]byte, i)
	copy(resp, query[:i])
	// QR, opcode 0, RD as asked, RA, RCODE 3.
	binary.BigEndian.PutUint16(resp[2:], 0x8000|flags&0x0100|0x0080|3)
	binary.BigEndian.PutUint16(resp[6:], 0)  // ANCOUNT
	binary.BigEndian.PutUint16(resp[8:], 0)  // NSCOUNT
	binary.BigEndian.PutUint16(resp[10:], 0) // ARCOUNT
	return resp
}
