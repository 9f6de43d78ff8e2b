package testenv

import (
	"net"
	"strconv"
	"testing"
)

// FreePort never hands out a port twice, stays below the ephemeral range,
// and the port can be bound on every address asked for.
func TestFreePort(t *testing.T) {
	lo, hi := portRange()
	if lo >= hi || hi > 65536 {
		t.Fatalf("range [%d, %d)", lo, hi)
	}
	seen := map[int]bool{}
	for range 200 {
		p := FreePort(t, "127.0.0.2")
		if seen[p] {
			t.Fatalf("port %d returned twice", p)
		}
		seen[p] = true
		if p < lo || p >= hi {
			t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
		}
	}
	addr := FreeAddr(t)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	if n, _ := strconv.Atoi(port); seen[n] {
		t.Fatalf("FreeAddr returned %s, already handed out", addr)
	}
}
