package server

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
)

func TestMXAcceptsLocalMailWithDSN(t *testing.T) {
	e := newEnv(t, envConfig{})
	w := dialWire(t, e.addr[MX])
	w.expect("220 mx.test ESMTP")
	w.send("EHLO client.example\r\n")
	var caps []string
	for {
		line, err := w.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		caps = append(caps, strings.TrimRight(line[4:], "\r\n"))
		if line[3] == ' ' {
			break
		}
	}
	got := strings.Join(caps, "|")
	for _, want := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING", "STARTTLS", "SMTPUTF8", "DSN", "SIZE 1048576"} {
		if !strings.Contains(got, want) {
			t.Errorf("EHLO lacks %s: %s", want, got)
		}
	}
	if strings.Contains(got, "AUTH") {
		t.Errorf("MX offers AUTH: %s", got)
	}
	w.cmd("MAIL FROM:<sender@remote.test> RET=HDRS ENVID=env+2Bid BODY=8BITMIME", "250 2.0.0")
	w.cmd("RCPT TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+40example.com", "250 2.0.0")
	w.cmd("RCPT TO:<alice@example.com>", "250 2.0.0")
	w.cmd("DATA", "354")
	body := "From: sender@remote.test\r\nSubject: hi\r\n\r\nHello\r\n..leading dot\r\n"
	reply := w.cmd(body+".", "250 2.0.0 OK: queued as ")
	id := queueID(t, reply)
	w.cmd("QUIT", "221")

	entries := e.queued()
	if len(entries) != 1 {
		t.Fatalf("%d queue entries, want 1", len(entries))
	}
	qe := entries[0]
	if qe.QueueId != id || qe.TenantId != "tenant-a" || qe.MailFrom != "sender@remote.test" {
		t.Fatalf("entry %v", qe)
	}
	if qe.DsnRet != queuev1.DSNReturn_DSN_RETURN_HDRS || qe.DsnEnvid != "env+id" || qe.Body != queuev1.Body_BODY_8BITMIME {
		t.Fatalf("DSN/BODY params not carried: %v", qe)
	}
	if len(qe.Recipients) != 2 || qe.Recipients[0].Address != "bob@example.com" || !qe.Recipients[0].Local ||
		qe.Recipients[0].OrcptType != "RFC822" || qe.Recipients[0].Orcpt != "bob@example.com" ||
		len(qe.Recipients[0].Notify) != 2 || qe.Recipients[0].Notify[0] != queuev1.DSNNotify_DSN_NOTIFY_SUCCESS {
		t.Fatalf("recipients %v", qe.Recipients)
	}
	if qe.Client.GetIp() != "127.0.0.1" || qe.Client.GetHelo() != "client.example" || qe.Client.GetListener() != "mx" || qe.Client.GetTls() {
		t.Fatalf("client %v", qe.Client)
	}
	obj := e.object(qe.BlobKey)
	if !strings.HasPrefix(obj, "Received: from client.example ([127.0.0.1])\r\n\tby mx.test (Petrel) with ESMTP id "+id+"\r\n") {
		t.Fatalf("object does not start with Received:\n%s", obj)
	}
	if !strings.HasSuffix(obj, "\r\n"+body[:len(body)-len("..leading dot\r\n")]+".leading dot\r\n") {
		t.Fatalf("body not stored as sent (dot-unstuffed):\n%q", obj)
	}
	sum := sha256.Sum256([]byte(obj))
	if qe.Sha256 != hex.EncodeToString(sum[:]) || qe.Size != int64(len(obj)) {
		t.Fatalf("sha256/size %s/%d do not match the object", qe.Sha256, qe.Size)
	}
	if !strings.HasPrefix(qe.BlobKey, "msg/tenant-a/") || strings.Count(qe.BlobKey, "/") != 5 || !strings.HasSuffix(qe.BlobKey, "/"+id) {
		t.Fatalf("blob key %s", qe.BlobKey)
	}
}

func TestMXRecipientRules(t *testing.T) {
	e := newEnv(t, envConfig{})
	w := dialWire(t, e.addr[MX])
	w.expect("220")
	w.cmd("EHLO client.example", "250")
	w.cmd("MAIL FROM:<sender@remote.test>", "250")
	w.cmd("RCPT TO:<someone@remote.test>", "554 5.7.1 Relay access denied")
	w.cmd("RCPT TO:<nobody@example.com>", "550 5.1.1 No such user here")
	w.cmd("RCPT TO:<full@example.com>", "452 4.2.2")
	w.cmd("RCPT TO:<bob@example.com>", "250")
	// Another tenant's recipient waits for its own transaction.
	w.cmd("RCPT TO:<carol@other.test>", "452 4.5.3")
	w.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlLXNlY3JldA==", "523 5.7.10") // no AUTH on MX without TLS
	w.cmd("RSET", "250")
	w.cmd("MAIL FROM:<>", "250")
	w.cmd("RCPT TO:<carol@other.test>", "250")
	w.cmd("DATA", "354")
	w.cmd("Subject: bounce\r\n\r\nx\r\n.", "250 2.0.0 OK: queued as")
	entries := e.queued()
	if len(entries) != 1 || entries[0].TenantId != "tenant-b" || entries[0].MailFrom != "" {
		t.Fatalf("entries %v", entries)
	}
	// The directory being down is a temporary failure.
	e.dir.mu.Lock()
	e.dir.down = true
	e.dir.mu.Unlock()
	w.cmd("MAIL FROM:<a@remote.test>", "250")
	w.cmd("RCPT TO:<bob@example.com>", "451 4.4.3")
}
