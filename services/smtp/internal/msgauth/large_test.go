package msgauth

import (
	"context"
	"crypto"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

// genBody yields size bytes of CRLF-terminated text without holding them.
type genBody struct {
	remaining int
	line      string
	pos       int
}

func newGenBody(size int) *genBody {
	return &genBody{remaining: size, line: "The quick brown fox jumps over the lazy dog, 0123456789.\r\n"}
}

func (g *genBody) Read(p []byte) (int, error) {
	if g.remaining == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && g.remaining > 0 {
		c := copy(p[n:min(len(p), n+g.remaining)], g.line[g.pos:])
		g.pos = (g.pos + c) % len(g.line)
		n += c
		g.remaining -= c
	}
	return n, nil
}

// heapProbe passes a message through and, once most of it has gone by,
// records the live heap: if anyone held the body, it would be there.
type heapProbe struct {
	r       io.Reader
	read    int
	probeAt int
	live    uint64
	probed  bool
}

func (h *heapProbe) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.read += n
	if !h.probed && h.read >= h.probeAt {
		h.probed = true
		h.live = liveHeap()
	}
	return n, err
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func TestVerifyLargeMessageBoundedMemory(t *testing.T) {
	const size = 20 << 20
	d := world(t)
	rk, ek := testKeys(t)
	v := newTestVerifier(t, d, Options{})
	header := "From: alice@example.test\r\nTo: bob@petrel.test\r\nSubject: big\r\n\r\n"

	// Sign by streaming the generated message through each signer.
	var sigs []string
	for _, k := range []struct {
		sel string
		key crypto.Signer
	}{{"sel", rk}, {"ed", ek}} {
		s, err := dkim.NewSigner(&dkim.SignOptions{
			Domain: "example.test", Selector: k.sel, Signer: k.key,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationSimple,
			HeaderKeys:             []string{"From", "To", "Subject"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(s, io.MultiReader(strings.NewReader(header), newGenBody(size))); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, s.Signature())
	}

	msg := io.MultiReader(strings.NewReader(strings.Join(sigs, "")+header), newGenBody(size))
	probe := &heapProbe{r: msg, probeAt: size - 1<<20}
	before := liveHeap()
	res, err := v.Verify(context.Background(), probe, SPFResult{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.DKIM) != 2 || res.DKIM[0].Result != "pass" || res.DKIM[1].Result != "pass" {
		t.Fatalf("DKIM = %+v, want two passes", res.DKIM)
	}
	if res.DMARC.Result != DMARCPass {
		t.Fatalf("DMARC = %+v", res.DMARC)
	}
	if !probe.probed || probe.read < size {
		t.Fatalf("read %d bytes, want the whole message", probe.read)
	}
	grew := int64(probe.live) - int64(before)
	t.Logf("live heap grew by %d KiB while verifying a %d MiB message", grew>>10, size>>20)
	if grew > 8<<20 {
		t.Fatalf("live heap grew by %d MiB: the body is being held in memory", grew>>20)
	}
}
