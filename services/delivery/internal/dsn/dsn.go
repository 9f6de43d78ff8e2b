// Package dsn builds delivery status notifications: the bounce, delay
// warning and success reports the delivery service sends to a message's
// envelope sender.
//
// A DSN is an RFC 6522 multipart/report with report-type=delivery-status:
// a human-readable part, an RFC 3464 message/delivery-status part (one
// per-message block and one block per recipient with Final-Recipient,
// Original-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
// Last-Attempt-Date and Will-Retry-Until), and the returned message or its
// header. RFC 3461's parameters from the queue entry are honoured: NOTIFY
// (which recipients and outcomes are reported), RET (full message or
// headers), ENVID and ORCPT (echoed back). A DSN goes out with the null
// reverse path MAIL FROM:<> to the envelope sender, and there is never a
// DSN about a message whose sender was null (RFC 5321 §4.5.5,
// SMTP-LESSONS 14), which is what keeps bounces from looping. The
// notification is written with CRLF line endings only (SMTP-LESSONS 2),
// the original is streamed from its source, and a large original is
// replaced by its header (bounded size).
package dsn

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
	"github.com/petrel-mail/petrel/services/delivery/internal/crlf"
)

// Action is a recipient's Action field (RFC 3464 §2.3.3).
type Action string

const (
	Failed    Action = "failed"
	Delayed   Action = "delayed"
	Delivered Action = "delivered"
	Relayed   Action = "relayed"
	Expanded  Action = "expanded"
)

// Defaults for Report limits.
const (
	DefaultMaxFullSize   = 1 << 20   // larger originals come back as headers only
	DefaultMaxHeaderSize = 256 << 10 // the returned header is cut here
)

var (
	// ErrNullSender: the message had the null sender; no DSN may be sent.
	ErrNullSender = errors.New("dsn: no notification for a message with a null sender")
	// ErrNothingToReport: NOTIFY excludes every recipient given.
	ErrNothingToReport = errors.New("dsn: no recipient asked for this notification")
)

// RecipientStatus is one recipient's outcome.
type RecipientStatus struct {
	Recipient *queuev1.Recipient
	Action    Action
	// Status is the RFC 3463 code, e.g. "5.1.1".
	Status string
	// RemoteMTA is the host name of the server that answered, "" if none.
	RemoteMTA string
	// Diagnostic is the remote's reply on one line ("550 5.1.1 No such
	// user"), "" if no remote reply decided.
	Diagnostic string
	// Detail is our explanation, shown in the human-readable part when
	// there is no Diagnostic.
	Detail      string
	LastAttempt time.Time
	// WillRetryUntil is when a delayed message will be given up on.
	WillRetryUntil time.Time
}

// Report is the input of Build.
type Report struct {
	// ReportingMTA is our host name: Reporting-MTA and MAILER-DAEMON@.
	ReportingMTA string
	Entry        *queuev1.QueueEntry
	Recipients   []RecipientStatus
	// Date of the report; MessageID is generated when empty.
	Date      time.Time
	MessageID string
	// Original opens the original message; nil returns no content.
	Original func() (io.ReadCloser, error)
	// MaxFullSize: an original larger than this is returned as headers
	// only even with RET=FULL; 0 means DefaultMaxFullSize.
	MaxFullSize int64
	// MaxHeaderSize bounds the returned header; 0 means
	// DefaultMaxHeaderSize.
	MaxHeaderSize int64
}

// Wanted reports whether recipient r asked to be told about action,
// following NOTIFY (RFC 3461 §4.1): NEVER means nothing; without NOTIFY,
// failures and delays are reported; success only when asked.
func Wanted(r *queuev1.Recipient, action Action) bool {
	notify := r.GetNotify()
	if slices.Contains(notify, queuev1.DSNNotify_DSN_NOTIFY_NEVER) {
		return false
	}
	if len(notify) == 0 || (len(notify) == 1 && notify[0] == queuev1.DSNNotify_DSN_NOTIFY_UNSPECIFIED) {
		return action == Failed || action == Delayed
	}
	switch action {
	case Failed:
		return slices.Contains(notify, queuev1.DSNNotify_DSN_NOTIFY_FAILURE)
	case Delayed:
		return slices.Contains(notify, queuev1.DSNNotify_DSN_NOTIFY_DELAY)
	default:
		return slices.Contains(notify, queuev1.DSNNotify_DSN_NOTIFY_SUCCESS)
	}
}

// Notification is a DSN ready to be queued: send it with MAIL FROM:<>
// (the null sender) to To.
type Notification struct {
	// To is the envelope recipient: the original envelope sender.
	To string
	// Recipients actually reported (NOTIFY applied).
	Recipients []RecipientStatus
	// EightBit and UTF8 say how to queue the DSN (BODY=8BITMIME,
	// SMTPUTF8), as the returned content or addresses require.
	EightBit bool
	UTF8     bool
	// Subject line chosen from the actions reported.
	Subject string

	report Report
	full   bool // return the whole original
}

// Build selects the recipients to report and the returned content. It
// returns ErrNullSender or ErrNothingToReport when no DSN must be sent.
func Build(r Report) (*Notification, error) {
	if r.Entry.GetMailFrom() == "" {
		return nil, ErrNullSender
	}
	n := &Notification{To: r.Entry.GetMailFrom(), report: r}
	failed, delayed := false, false
	for _, rs := range r.Recipients {
		if !Wanted(rs.Recipient, rs.Action) {
			continue
		}
		n.Recipients = append(n.Recipients, rs)
		failed = failed || rs.Action == Failed
		delayed = delayed || rs.Action == Delayed
	}
	if len(n.Recipients) == 0 {
		return nil, ErrNothingToReport
	}
	switch {
	case failed:
		n.Subject = "Undelivered Mail Returned to Sender"
	case delayed:
		n.Subject = "Delayed Mail (still being retried)"
	default:
		n.Subject = "Successful Mail Delivery Report"
	}
	if n.report.MaxFullSize == 0 {
		n.report.MaxFullSize = DefaultMaxFullSize
	}
	if n.report.MaxHeaderSize == 0 {
		n.report.MaxHeaderSize = DefaultMaxHeaderSize
	}
	// RFC 3461 §4.3: RET applies to failure reports; delay and success
	// reports carry the header only, as Postfix does.
	n.full = failed && r.Entry.GetDsnRet() != queuev1.DSNReturn_DSN_RETURN_HDRS &&
		r.Entry.GetSize() <= n.report.MaxFullSize
	n.EightBit = n.full && r.Entry.GetBody() != queuev1.Body_BODY_7BIT && r.Entry.GetBody() != queuev1.Body_BODY_UNSPECIFIED
	n.UTF8 = r.Entry.GetSmtputf8() || !isASCII(n.To)
	if n.report.MessageID == "" {
		n.report.MessageID = "<" + randomToken() + ".dsn@" + clean(r.ReportingMTA) + ">"
	}
	return n, nil
}

// WriteTo writes the DSN message (header and body), streaming the
// original from Report.Original.
func (n *Notification) WriteTo(dst io.Writer) (int64, error) {
	cw := &countWriter{w: dst}
	bw := bufio.NewWriter(cw)
	if err := n.write(bw); err != nil {
		return cw.n, err
	}
	err := bw.Flush()
	return cw.n, err
}

func (n *Notification) write(w *bufio.Writer) error {
	r := n.report
	host := clean(r.ReportingMTA)
	boundary := "=_petrel_" + randomToken()
	line := func(format string, args ...any) {
		fmt.Fprintf(w, format+"\r\n", args...)
	}

	line("From: Mail Delivery System <MAILER-DAEMON@%s>", host)
	line("To: <%s>", clean(n.To))
	line("Subject: %s", n.Subject)
	line("Date: %s", r.Date.Format(time.RFC1123Z))
	line("Message-ID: %s", clean(r.MessageID))
	line("Auto-Submitted: auto-replied") // RFC 3834 §5
	line("MIME-Version: 1.0")
	line(`Content-Type: multipart/report; report-type=delivery-status; boundary="%s"`, boundary)
	line("")
	line("This is a MIME-encapsulated message.")
	line("")

	// Part 1: for people (RFC 6522 §3).
	line("--%s", boundary)
	line("Content-Type: text/plain; charset=utf-8")
	line("Content-Transfer-Encoding: quoted-printable")
	line("Content-Description: Notification")
	line("")
	// quotedprintable writes CRLF line ends for the text's LFs.
	qp := quotedprintable.NewWriter(w)
	io.WriteString(qp, n.humanText())
	if err := qp.Close(); err != nil {
		return err
	}
	line("")

	// Part 2: for machines (RFC 3464 §2).
	line("--%s", boundary)
	line("Content-Type: message/delivery-status")
	line("Content-Description: Delivery report")
	line("")
	line("Reporting-MTA: dns; %s", host)
	if id := clean(r.Entry.GetQueueId()); id != "" {
		line("X-Petrel-Queue-ID: %s", id)
	}
	if env := clean(r.Entry.GetDsnEnvid()); env != "" {
		line("Original-Envelope-Id: %s", env)
	}
	if at := r.Entry.GetReceivedAt(); at != nil {
		line("Arrival-Date: %s", at.AsTime().Format(time.RFC1123Z))
	}
	for _, rs := range n.Recipients {
		line("")
		line("Final-Recipient: %s", addressField(rs.Recipient.GetAddress()))
		if orcpt := clean(rs.Recipient.GetOrcpt()); orcpt != "" {
			typ := clean(rs.Recipient.GetOrcptType())
			if typ == "" {
				typ = "rfc822"
			}
			line("Original-Recipient: %s; %s", typ, orcpt)
		}
		line("Action: %s", rs.Action)
		line("Status: %s", clean(rs.Status))
		if rs.RemoteMTA != "" {
			line("Remote-MTA: dns; %s", clean(rs.RemoteMTA))
		}
		if rs.Diagnostic != "" {
			line("Diagnostic-Code: smtp; %s", truncate(clean(rs.Diagnostic), maxFieldValue))
		}
		if !rs.LastAttempt.IsZero() {
			line("Last-Attempt-Date: %s", rs.LastAttempt.Format(time.RFC1123Z))
		}
		if rs.Action == Delayed && !rs.WillRetryUntil.IsZero() {
			line("Will-Retry-Until: %s", rs.WillRetryUntil.Format(time.RFC1123Z))
		}
	}
	line("")

	// Part 3: the original, or its header.
	if r.Original != nil {
		line("--%s", boundary)
		if err := n.writeOriginal(w, line); err != nil {
			return err
		}
	}
	line("--%s--", boundary)
	return nil
}

func (n *Notification) writeOriginal(w *bufio.Writer, line func(string, ...any)) error {
	rc, err := n.report.Original()
	if err != nil {
		return fmt.Errorf("dsn: opening original message: %w", err)
	}
	defer rc.Close()
	src := bufio.NewReader(crlf.NewReader(rc))
	if n.full {
		line("Content-Type: message/rfc822")
		line("Content-Description: Undelivered Message")
		if n.EightBit {
			line("Content-Transfer-Encoding: 8bit")
		}
		line("")
		if _, err := io.Copy(w, src); err != nil {
			return fmt.Errorf("dsn: copying original message: %w", err)
		}
		// The closing boundary's CRLF belongs to the boundary (RFC 2046
		// §5.1.1): make sure the content ends a line first.
		line("")
		return nil
	}
	line("Content-Type: text/rfc822-headers")
	line("Content-Description: Message Headers")
	line("")
	var written int64
	for {
		l, err := src.ReadSlice('\n')
		if len(l) > 0 && string(l) != "\r\n" {
			if written+int64(len(l)) > n.report.MaxHeaderSize {
				break
			}
			w.Write(l)
			written += int64(len(l))
			if l[len(l)-1] != '\n' {
				line("")
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF || string(l) == "\r\n" {
			break
		}
		if err != nil {
			return fmt.Errorf("dsn: reading original header: %w", err)
		}
	}
	line("")
	return nil
}

func (n *Notification) humanText() string {
	var b strings.Builder
	host := clean(n.report.ReportingMTA)
	fmt.Fprintf(&b, "This is the mail system at host %s.\n\n", host)
	var failed, delayed, ok []RecipientStatus
	for _, rs := range n.Recipients {
		switch rs.Action {
		case Failed:
			failed = append(failed, rs)
		case Delayed:
			delayed = append(delayed, rs)
		default:
			ok = append(ok, rs)
		}
	}
	explain := func(rs RecipientStatus) {
		fmt.Fprintf(&b, "<%s>:", clean(rs.Recipient.GetAddress()))
		switch {
		case rs.Diagnostic != "" && rs.RemoteMTA != "":
			fmt.Fprintf(&b, " host %s said: %s\n", clean(rs.RemoteMTA), clean(rs.Diagnostic))
		case rs.Diagnostic != "":
			fmt.Fprintf(&b, " %s\n", clean(rs.Diagnostic))
		case rs.Detail != "":
			fmt.Fprintf(&b, " %s (%s)\n", clean(rs.Detail), clean(rs.Status))
		default:
			fmt.Fprintf(&b, " status %s\n", clean(rs.Status))
		}
	}
	if len(failed) > 0 {
		b.WriteString("I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients. It's attached below.\n\n")
		for _, rs := range failed {
			explain(rs)
		}
		b.WriteString("\n")
	}
	if len(delayed) > 0 {
		b.WriteString("Your message could not be delivered yet to the recipients below.\nThe mail system will keep trying")
		if until := delayed[0].WillRetryUntil; !until.IsZero() {
			fmt.Fprintf(&b, " until %s", until.Format(time.RFC1123Z))
		}
		b.WriteString(".\nYou do not need to send the message again.\n\n")
		for _, rs := range delayed {
			explain(rs)
		}
		b.WriteString("\n")
	}
	if len(ok) > 0 {
		b.WriteString("Your message was successfully delivered to the recipients below,\nas you asked to be told.\n\n")
		for _, rs := range ok {
			explain(rs)
		}
	}
	return b.String()
}

// addressField is Final-Recipient's value: rfc822 for ASCII addresses,
// utf-8 for internationalized ones (RFC 6533 §3.1).
func addressField(addr string) string {
	addr = clean(addr)
	if isASCII(addr) {
		return "rfc822; " + addr
	}
	return "utf-8; " + addr
}

// clean removes CR, LF and other control characters from a value that
// goes into a header field: envelope data is hostile (SMTP-LESSONS 4, 19).
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			if r == '\t' || r == '\n' || r == '\r' {
				return ' '
			}
			return -1
		}
		return r
	}, s)
}

// maxFieldValue keeps a field line under RFC 5322's 998-octet limit.
const maxFieldValue = 900

// truncate cuts s to at most n octets without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func randomToken() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n += int64(k)
	return k, err
}
