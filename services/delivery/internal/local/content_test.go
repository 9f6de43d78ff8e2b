package local

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
)

// TestInlineContent: the entry's copy goes to the store only when it is
// the object smtp stored (size and SHA-256); otherwise the store reads
// the object.
func TestInlineContent(t *testing.T) {
	body := []byte("Subject: hi\r\n\r\nhello\r\n")
	sum := sha256.Sum256(body)
	good := &queuev1.QueueEntry{Size: int64(len(body)), Sha256: hex.EncodeToString(sum[:]), Content: body}
	if got := inlineContent(good); string(got) != string(body) {
		t.Fatalf("matching copy not used: %q", got)
	}
	for name, en := range map[string]*queuev1.QueueEntry{
		"no copy":        {Size: int64(len(body)), Sha256: good.Sha256},
		"other bytes":    {Size: int64(len(body)), Sha256: good.Sha256, Content: []byte("Subject: ho\r\n\r\nhello\r\n")},
		"truncated":      {Size: int64(len(body)) + 5, Sha256: good.Sha256, Content: body},
		"no checksum":    {Size: int64(len(body)), Content: body},
		"wrong checksum": {Size: int64(len(body)), Sha256: hex.EncodeToString(make([]byte, 32)), Content: body},
	} {
		if got := inlineContent(en); got != nil {
			t.Errorf("%s: copy used (%q)", name, got)
		}
	}
}
