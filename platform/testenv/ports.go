package testenv

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// FreePort returns a TCP port that nothing listens on, on 127.0.0.1 and on
// each of ips, for a process the test starts and that binds it itself (or
// for a server that must come back on the same port).
//
// Listening on port 0 and closing the listener, the usual trick, is not
// enough when a second process binds the port later: the kernel hands the
// same ephemeral range to every outgoing connection and to every other
// test's port-0 listener (go test runs packages in parallel), so the port
// can be taken in between; and two such calls in a row may return the
// same port. FreePort picks ports below the kernel's ephemeral range, which
// neither draws from, and never returns a port twice in one process.
func FreePort(tb testing.TB, ips ...string) int {
	tb.Helper()
	lo, hi := portRange()
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		if !claim(port) {
			continue
		}
		if bindable(port, append([]string{"127.0.0.1"}, ips...)) {
			return port
		}
	}
	tb.Fatalf("testenv: no free port in [%d, %d)", lo, hi)
	return 0
}

// FreeAddr is FreePort on 127.0.0.1, as "127.0.0.1:port".
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb)))
}

var (
	portsMu sync.Mutex
	claimed = map[int]bool{}
)

func claim(port int) bool {
	portsMu.Lock()
	defer portsMu.Unlock()
	if claimed[port] {
		return false
	}
	claimed[port] = true
	return true
}

func bindable(port int, ips []string) bool {
	for _, ip := range ips {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

// portRange is the span of up to 12,000 ports just below the ephemeral
// range (/proc/sys/net/ipv4/ip_local_port_range; Linux's default starts it
// at 32768), and never below 10000.
func portRange() (lo, hi int) {
	hi = 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				hi = n
			}
		}
	}
	return max(10000, hi-12000), hi
}
