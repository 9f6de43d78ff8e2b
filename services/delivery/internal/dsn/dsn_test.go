package dsn_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
	"google.golang.org/protobuf/types/known/timestamppb"

	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
	"github.com/petrel-mail/petrel/services/delivery/internal/dsn"
)

const original = "Received: from client by mx; Wed, 25 Nov 2026 11:59:00 +0000\r\n" +
	"From: Alice <alice@example.com>\r\n" +
	"To: bob@example.org\r\n" +
	"Subject: The plan\r\n" +
	"\r\n" +
	"Body line one\nbody line two\r\n"

var (
	arrival = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	now     = arrival.Add(2 * time.Hour)
)

func entry(ret queuev1.DSNReturn) *queuev1.QueueEntry {
	return &queuev1.QueueEntry{
		QueueId:    "Q123",
		MailFrom:   "alice@example.com",
		Size:       int64(len(original)),
		ReceivedAt: timestamppb.New(arrival),
		DsnRet:     ret,
		DsnEnvid:   "env-42",
		Recipients: []*queuev1.Recipient{
			{Address: "bob@example.org", OrcptType: "rfc822", Orcpt: "Bob@Example.ORG"},
			{Address: "carol@example.org", Notify: []queuev1.DSNNotify{queuev1.DSNNotify_DSN_NOTIFY_NEVER}},
			{Address: "dave@example.org", Notify: []queuev1.DSNNotify{queuev1.DSNNotify_DSN_NOTIFY_SUCCESS}},
		},
	}
}

func openOriginal() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(original)), nil }

// parsed is a DSN taken apart with go-message.
type parsed struct {
	header     message.Header
	text       string
	perMessage textproto.Header
	perRcpt    []textproto.Header
	thirdType  string
	third      string
	raw        []byte
}

func build(t *testing.T, r dsn.Report) (*dsn.Notification, parsed) {
	t.Helper()
	n, err := dsn.Build(r)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := n.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	stripped := bytes.ReplaceAll(raw, []byte("\r\n"), nil)
	if bytes.ContainsAny(stripped, "\r\n") {
		t.Fatalf("DSN has a bare CR or LF:\n%q", raw)
	}

	var p parsed
	p.raw = raw
	ent, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	p.header = ent.Header
	mt, params, _ := ent.Header.ContentType()
	if mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %s %v", mt, params)
	}
	mr := ent.MultipartReader()
	for i := 0; ; i++ {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(part.Body)
		ct, _, _ := part.Header.ContentType()
		switch i {
		case 0:
			if ct != "text/plain" {
				t.Fatalf("part 1 is %s", ct)
			}
			p.text = string(body)
		case 1:
			if ct != "message/delivery-status" {
				t.Fatalf("part 2 is %s", ct)
			}
			br := bufioReader(body)
			p.perMessage, err = textproto.ReadHeader(br)
			if err != nil {
				t.Fatalf("per-message fields: %v", err)
			}
			for {
				h, err := textproto.ReadHeader(br)
				if err != nil || h.Len() == 0 {
					break
				}
				p.perRcpt = append(p.perRcpt, h)
			}
		case 2:
			p.thirdType = ct
			p.third = string(body)
		default:
			t.Fatalf("unexpected part %d (%s)", i+1, ct)
		}
	}
	return n, p
}

func TestFailureDSN(t *testing.T) {
	e := entry(queuev1.DSNReturn_DSN_RETURN_FULL)
	n, p := build(t, dsn.Report{
		ReportingMTA: "mx.petrel.test",
		Entry:        e,
		Date:         now,
		Original:     openOriginal,
		Recipients: []dsn.RecipientStatus{
			{Recipient: e.Recipients[0], Action: dsn.Failed, Status: "5.1.1", RemoteMTA: "mx1.example.org",
				Diagnostic: "550 5.1.1 No such user here", LastAttempt: now},
			{Recipient: e.Recipients[1], Action: dsn.Failed, Status: "5.1.1", LastAttempt: now},
			{Recipient: e.Recipients[2], Action: dsn.Failed, Status: "5.2.2", LastAttempt: now},
		},
	})
	if n.To != "alice@example.com" || len(n.Recipients) != 1 {
		t.Fatalf("notification to %s about %d recipients", n.To, len(n.Recipients))
	}
	h := p.header
	for k, want := range map[string]string{
		"From":           "Mail Delivery System <MAILER-DAEMON@mx.petrel.test>",
		"To":             "<alice@example.com>",
		"Subject":        "Undelivered Mail Returned to Sender",
		"Auto-Submitted": "auto-replied",
		"MIME-Version":   "1.0",
		"Date":           now.Format(time.RFC1123Z),
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if !strings.HasSuffix(h.Get("Message-Id"), "@mx.petrel.test>") {
		t.Errorf("Message-ID %q", h.Get("Message-Id"))
	}
	if !strings.Contains(p.text, "<bob@example.org>: host mx1.example.org said: 550 5.1.1 No such user here") {
		t.Errorf("human text:\n%s", p.text)
	}
	for k, want := range map[string]string{
		"Reporting-MTA":        "dns; mx.petrel.test",
		"Original-Envelope-Id": "env-42",
		"Arrival-Date":         arrival.Format(time.RFC1123Z),
		"X-Petrel-Queue-Id":    "Q123",
	} {
		if got := p.perMessage.Get(k); got != want {
			t.Errorf("per-message %s = %q, want %q", k, got, want)
		}
	}
	if len(p.perRcpt) != 1 {
		t.Fatalf("%d recipient blocks; NOTIFY=NEVER and NOTIFY=SUCCESS recipients must be left out", len(p.perRcpt))
	}
	r := p.perRcpt[0]
	for k, want := range map[string]string{
		"Final-Recipient":    "rfc822; bob@example.org",
		"Original-Recipient": "rfc822; Bob@Example.ORG",
		"Action":             "failed",
		"Status":             "5.1.1",
		"Remote-MTA":         "dns; mx1.example.org",
		"Diagnostic-Code":    "smtp; 550 5.1.1 No such user here",
		"Last-Attempt-Date":  now.Format(time.RFC1123Z),
	} {
		if got := r.Get(k); got != want {
			t.Errorf("recipient %s = %q, want %q", k, got, want)
		}
	}
	if r.Has("Will-Retry-Until") {
		t.Error("Will-Retry-Until in a failure")
	}
	if p.thirdType != "message/rfc822" {
		t.Fatalf("returned content is %s, want the full message", p.thirdType)
	}
	wantOrig := strings.ReplaceAll(strings.ReplaceAll(original, "\r\n", "\n"), "\n", "\r\n")
	if strings.TrimRight(p.third, "\r\n") != strings.TrimRight(wantOrig, "\r\n") {
		t.Errorf("returned message %q, want %q", p.third, wantOrig)
	}
}

func TestRetHeadersAndSizeLimit(t *testing.T) {
	check := func(name string, e *queuev1.QueueEntry, maxFull int64) {
		t.Helper()
		_, p := build(t, dsn.Report{ReportingMTA: "mx.petrel.test", Entry: e, Date: now, Original: openOriginal, MaxFullSize: maxFull,
			Recipients: []dsn.RecipientStatus{{Recipient: e.Recipients[0], Action: dsn.Failed, Status: "5.0.0"}}})
		if p.thirdType != "text/rfc822-headers" {
			t.Fatalf("%s: returned %s, want headers only", name, p.thirdType)
		}
		if !strings.Contains(p.third, "Subject: The plan\r\n") || strings.Contains(p.third, "Body line") {
			t.Errorf("%s: returned headers %q", name, p.third)
		}
	}
	check("RET=HDRS", entry(queuev1.DSNReturn_DSN_RETURN_HDRS), 0)
	check("RET=FULL over the limit", entry(queuev1.DSNReturn_DSN_RETURN_FULL), 10)
	check("no RET over the limit", entry(queuev1.DSNReturn_DSN_RETURN_UNSPECIFIED), 10)
}

func TestDelayDSN(t *testing.T) {
	e := entry(queuev1.DSNReturn_DSN_RETURN_FULL)
	e.Recipients[0].Notify = []queuev1.DSNNotify{queuev1.DSNNotify_DSN_NOTIFY_DELAY, queuev1.DSNNotify_DSN_NOTIFY_FAILURE}
	until := arrival.Add(5 * 24 * time.Hour)
	_, p := build(t, dsn.Report{ReportingMTA: "mx.petrel.test", Entry: e, Date: now, Original: openOriginal,
		Recipients: []dsn.RecipientStatus{{Recipient: e.Recipients[0], Action: dsn.Delayed, Status: "4.4.1",
			RemoteMTA: "mx1.example.org", Diagnostic: "451 4.3.0 Try later", LastAttempt: now, WillRetryUntil: until}}})
	if got := p.header.Get("Subject"); got != "Delayed Mail (still being retried)" {
		t.Errorf("Subject %q", got)
	}
	r := p.perRcpt[0]
	if r.Get("Action") != "delayed" || r.Get("Status") != "4.4.1" || r.Get("Will-Retry-Until") != until.Format(time.RFC1123Z) ||
		r.Get("Diagnostic-Code") != "smtp; 451 4.3.0 Try later" {
		t.Errorf("recipient block %v", r)
	}
	if p.thirdType != "text/rfc822-headers" {
		t.Errorf("a delay warning returned %s; headers only expected", p.thirdType)
	}
	if !strings.Contains(p.text, "keep trying until "+until.Format(time.RFC1123Z)) {
		t.Errorf("text:\n%s", p.text)
	}
}

func TestNotifyAndNullSender(t *testing.T) {
	e := entry(queuev1.DSNReturn_DSN_RETURN_UNSPECIFIED)
	only := func(i int, a dsn.Action) dsn.Report {
		return dsn.Report{ReportingMTA: "h", Entry: e, Date: now,
			Recipients: []dsn.RecipientStatus{{Recipient: e.Recipients[i], Action: a, Status: "5.0.0"}}}
	}
	if _, err := dsn.Build(only(1, dsn.Failed)); !errors.Is(err, dsn.ErrNothingToReport) {
		t.Errorf("NOTIFY=NEVER: %v", err)
	}
	if _, err := dsn.Build(only(2, dsn.Failed)); !errors.Is(err, dsn.ErrNothingToReport) {
		t.Errorf("NOTIFY=SUCCESS on failure: %v", err)
	}
	if _, err := dsn.Build(only(0, dsn.Delivered)); !errors.Is(err, dsn.ErrNothingToReport) {
		t.Errorf("default NOTIFY on success: %v", err)
	}
	n, p := build(t, only(2, dsn.Delivered))
	if n.Subject != "Successful Mail Delivery Report" || p.perRcpt[0].Get("Action") != "delivered" {
		t.Errorf("success DSN: %s %v", n.Subject, p.perRcpt[0])
	}
	if _, err := dsn.Build(only(0, dsn.Failed)); err != nil {
		t.Errorf("default NOTIFY on failure: %v", err)
	}

	e.MailFrom = ""
	if _, err := dsn.Build(only(0, dsn.Failed)); !errors.Is(err, dsn.ErrNullSender) {
		t.Errorf("null sender: %v", err)
	}
}

func TestHostileValuesCannotInjectFields(t *testing.T) {
	e := entry(queuev1.DSNReturn_DSN_RETURN_HDRS)
	e.DsnEnvid = "x\r\nAction: delivered"
	e.Recipients[0].Orcpt = "a@b\nStatus: 2.0.0"
	_, p := build(t, dsn.Report{ReportingMTA: "mx.petrel.test", Entry: e, Date: now,
		Recipients: []dsn.RecipientStatus{{Recipient: e.Recipients[0], Action: dsn.Failed, Status: "5.1.1",
			Diagnostic: "550 evil\r\nAction: delivered"}}})
	if len(p.perRcpt) != 1 {
		t.Fatalf("%d recipient blocks", len(p.perRcpt))
	}
	r := p.perRcpt[0]
	if vals := r.Values("Action"); len(vals) != 1 || vals[0] != "failed" {
		t.Errorf("Action values %v", vals)
	}
	if vals := r.Values("Status"); len(vals) != 1 || vals[0] != "5.1.1" {
		t.Errorf("Status values %v", vals)
	}
	if p.perMessage.Has("Action") {
		t.Error("injected a per-message field")
	}
}

func TestUTF8RecipientAndEightBitReturn(t *testing.T) {
	e := entry(queuev1.DSNReturn_DSN_RETURN_FULL)
	e.Body = queuev1.Body_BODY_8BITMIME
	e.Recipients[0].Address = "jürgen@example.org"
	n, p := build(t, dsn.Report{ReportingMTA: "mx.petrel.test", Entry: e, Date: now, Original: openOriginal,
		Recipients: []dsn.RecipientStatus{{Recipient: e.Recipients[0], Action: dsn.Failed, Status: "5.1.1"}}})
	if got := p.perRcpt[0].Get("Final-Recipient"); got != "utf-8; jürgen@example.org" {
		t.Errorf("Final-Recipient %q", got)
	}
	if !n.EightBit {
		t.Error("8-bit original returned in full but the DSN is not flagged 8BITMIME")
	}
	if !strings.Contains(p.text, "jürgen@example.org") {
		t.Errorf("text part does not decode to the UTF-8 address:\n%s", p.text)
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

func TestLongDiagnosticStaysWithinLineLimit(t *testing.T) {
	e := entry(queuev1.DSNReturn_DSN_RETURN_HDRS)
	long := "550 5.7.1 " + strings.Repeat("é", 1000)
	_, p := build(t, dsn.Report{ReportingMTA: "h", Entry: e, Date: now,
		Recipients: []dsn.RecipientStatus{{Recipient: e.Recipients[0], Action: dsn.Failed, Status: "5.7.1", Diagnostic: long}}})
	for _, l := range strings.Split(string(p.raw), "\r\n") {
		if len(l) > 998 {
			t.Fatalf("line of %d octets", len(l))
		}
	}
	if d := p.perRcpt[0].Get("Diagnostic-Code"); !strings.HasPrefix(d, "smtp; 550 5.7.1 éé") || !utf8.ValidString(d) {
		t.Errorf("Diagnostic-Code %q", d)
	}
}
