package smtpout

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/petrel-mail/petrel/services/delivery/internal/crlf"
	"github.com/petrel-mail/petrel/services/delivery/internal/downgrade"
	"github.com/petrel-mail/petrel/services/delivery/internal/route"
)

// Options configures a Transport. New copies them; zero values take the
// defaults named on each field.
type Options struct {
	// EHLOName is our host name in EHLO (required).
	EHLOName string
	// DialTimeout bounds the TCP connect; default 30s (Postfix).
	DialTimeout time.Duration
	// CommandTimeout bounds the wait for the greeting and for the reply to
	// each command (EHLO, STARTTLS and the TLS handshake, MAIL, RCPT,
	// DATA, RSET); default 5m (RFC 5321 §4.5.3.2).
	CommandTimeout time.Duration
	// DataBlockTimeout bounds each write of the message body; default 3m.
	DataBlockTimeout time.Duration
	// FinalDotTimeout bounds the wait for the reply after the final dot;
	// default 10m.
	FinalDotTimeout time.Duration
	// Dialer; default a net.Dialer with DialTimeout.
	Dialer Dialer
	// TLSPolicy; default Opportunistic.
	TLSPolicy TLSPolicy
	// SmarthostTLS verifies a smarthost's certificate; nil verifies
	// against the system roots. ServerName defaults to the smarthost name.
	SmarthostTLS *tls.Config
	// MaxConnsPerDestination bounds concurrent sessions per recipient
	// domain (or to the smarthost); default 10.
	MaxConnsPerDestination int
	// SharedLimit, if set, also bounds sessions per destination across
	// processes (package destlimit); if it fails, the local bound alone
	// applies.
	SharedLimit SharedLimiter
	// DeadDestinationTime is how long a destination none of whose hosts
	// answered (connection refused or timed out, no greeting or a
	// refusing one, at every address) stays suspended: its mail is
	// deferred at once, without connecting (Postfix's dead destinations).
	// A session to it that succeeds ends the suspension. Default 5m;
	// negative: never suspend.
	DeadDestinationTime time.Duration
	// Suspensions holds the suspended destinations; default: this
	// process's own (package deaddest shares them between replicas).
	Suspensions Suspensions
	// MaxIdlePerHost bounds pooled idle sessions per host address;
	// default 2; negative disables reuse.
	MaxIdlePerHost int
	// IdleTimeout closes a pooled session unused this long; default 30s.
	IdleTimeout time.Duration
	// MaxMessagesPerConn closes a session after this many messages;
	// default 100.
	MaxMessagesPerConn int
	Logger             *slog.Logger
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.DialTimeout, 30*time.Second)
	def(&o.CommandTimeout, 5*time.Minute)
	def(&o.DataBlockTimeout, 3*time.Minute)
	def(&o.FinalDotTimeout, 10*time.Minute)
	def(&o.IdleTimeout, 30*time.Second)
	if o.DeadDestinationTime == 0 {
		o.DeadDestinationTime = 5 * time.Minute
	}
	if o.Suspensions == nil {
		o.Suspensions = &localSuspensions{m: map[string]localSuspension{}}
	}
	if o.Dialer == nil {
		o.Dialer = &net.Dialer{Timeout: o.DialTimeout}
	}
	if o.TLSPolicy == nil {
		o.TLSPolicy = Opportunistic{}
	}
	if o.MaxConnsPerDestination <= 0 {
		o.MaxConnsPerDestination = 10
	}
	if o.MaxIdlePerHost == 0 {
		o.MaxIdlePerHost = 2
	}
	if o.MaxMessagesPerConn <= 0 {
		o.MaxMessagesPerConn = 100
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// SharedLimiter hands out a destination's session slots shared by every
// delivery replica, and may start a destination with fewer sessions than
// its limit and adjust them to how its deliveries go (slow start,
// destlimit).
type SharedLimiter interface {
	Acquire(ctx context.Context, dest string) (release func(), err error)
	// Feedback reports a delivery to dest in which some host answered,
	// or none did. dead: none did and dest should be suspended (a
	// destination that refuses only some sessions is not dead).
	Feedback(ctx context.Context, dest string, answered bool) (dead bool, err error)
}

// Suspensions are the destinations whose mail is deferred without
// connecting (Options.DeadDestinationTime). Destinations are compared
// without regard to case.
type Suspensions interface {
	Suspended(dest string) (reason string, until time.Time, ok bool)
	// Suspend and Resume hold in this process even when they return an
	// error (from sharing the change).
	Suspend(ctx context.Context, dest, reason string, until time.Time) error
	Resume(ctx context.Context, dest string) error
}

// Transport delivers messages. It is safe for concurrent use.
type Transport struct {
	opts  Options
	pool  *pool
	limit *limiter
}

// New returns a Transport; Close it to end pooled sessions.
func New(opts Options) (*Transport, error) {
	if opts.EHLOName == "" || strings.ContainsAny(opts.EHLOName, " \r\n") {
		return nil, errors.New("smtpout: EHLOName must be a host name")
	}
	opts.setDefaults()
	return &Transport{
		opts:  opts,
		pool:  newPool(opts.MaxIdlePerHost, opts.IdleTimeout),
		limit: newLimiter(opts.MaxConnsPerDestination),
	}, nil
}

// Close ends all idle sessions (QUIT). Deliveries in progress finish.
func (t *Transport) Close() error {
	t.pool.close()
	return nil
}

// hostFailure is a failure of a host as a whole (connection, greeting,
// TLS, MAIL 4xx, 421): the recipients still pending go to the next address.
type hostFailure struct {
	// silent: the host did not answer (no connection, no greeting, or a
	// greeting that refuses the session).
	silent   bool
	enhanced string
	reply    *Reply
	detail   string
	host     string
	addr     string
}

// Deliver carries msg to every recipient over rt and returns one result
// per recipient, in msg.Recipients order. It tries the hosts and their
// addresses in order until no recipient is left undecided.
func (t *Transport) Deliver(ctx context.Context, rt route.Route, msg *Message) []RecipientResult {
	results := make([]RecipientResult, len(msg.Recipients))
	pending := make([]int, 0, len(msg.Recipients))
	for i, r := range msg.Recipients {
		results[i].Address = r.Address
		pending = append(pending, i)
	}
	last := hostFailure{enhanced: "4.4.1", detail: "no host could be tried"}
	if len(rt.Hosts) == 0 {
		last.detail = "route has no hosts"
	}

	destKey := DestinationKey(rt)
	if t.suspended(destKey, results, pending) {
		return results
	}
	release, err := t.acquire(ctx, destKey)
	if err != nil {
		last = hostFailure{enhanced: "4.3.0", detail: "delivery cancelled while waiting for a connection slot"}
		t.finishPending(results, pending, last)
		return results
	}
	defer release()
	// The sessions that held the slots may have found it dead meanwhile.
	if t.suspended(destKey, results, pending) {
		return results
	}

	// answered: some host of the destination answered (a session, or a
	// failure after its greeting); tried: some address was tried.
	var answered, tried bool
	defer func() {
		switch {
		case answered:
			t.feedback(ctx, destKey, true)
			t.Resume(ctx, destKey)
		case tried && ctx.Err() == nil:
			if t.feedback(ctx, destKey, false) {
				t.suspend(ctx, destKey, last)
			}
		}
	}()
hosts:
	for _, host := range rt.Hosts {
		req, err := t.tlsFor(ctx, rt, host)
		if err != nil {
			last = hostFailure{enhanced: "4.7.5", detail: "TLS policy refuses host: " + err.Error(), host: host.Name}
			t.opts.Logger.Warn("TLS policy refused MX host", "domain", rt.Domain, "mx", host.Name, "err", err)
			continue
		}
		for _, addr := range host.Addrs {
			if ctx.Err() != nil {
				last = hostFailure{enhanced: "4.3.0", detail: "delivery cancelled", host: host.Name}
				break hosts
			}
			var stop bool
			tried = true
			pending, stop, last = t.attempt(ctx, rt, host, addr, req, msg, results, pending, last, &answered)
			if len(pending) == 0 {
				return results
			}
			if stop {
				break hosts
			}
		}
	}
	t.finishPending(results, pending, last)
	return results
}

// DestinationKey names the destination of rt for the session limits and
// suspensions: the recipient domain, or the smarthost.
func DestinationKey(rt route.Route) string {
	if rt.Smarthost != nil {
		return "smarthost " + rt.Smarthost.Host
	}
	return rt.Domain
}

// suspended defers every pending recipient, without connecting, if dest
// is suspended.
func (t *Transport) suspended(dest string, results []RecipientResult, pending []int) bool {
	if t.opts.DeadDestinationTime < 0 {
		return false
	}
	reason, until, ok := t.opts.Suspensions.Suspended(dest)
	if !ok {
		return false
	}
	t.finishPending(results, pending, hostFailure{enhanced: "4.4.1",
		detail: fmt.Sprintf("delivery to %s temporarily suspended until %s: %s", dest, until.UTC().Format(time.RFC3339), reason)})
	return true
}

// feedback tells the shared limiter how a delivery to dest went and
// returns whether dest is dead. Without a shared limiter, or when it
// fails, a delivery that no host answered finds dest dead at once.
func (t *Transport) feedback(ctx context.Context, dest string, answered bool) (dead bool) {
	if t.opts.SharedLimit == nil {
		return !answered
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	dead, err := t.opts.SharedLimit.Feedback(ctx, dest, answered)
	if err != nil {
		t.opts.Logger.Warn("destination feedback not shared with the other replicas", "destination", dest, "err", err)
		return !answered
	}
	if !answered && !dead {
		t.opts.Logger.Info("no host of the destination answered; fewer sessions to it from now on", "destination", dest)
	}
	return dead
}

// suspend suspends dest after every address failed as last says.
func (t *Transport) suspend(ctx context.Context, dest string, last hostFailure) {
	if t.opts.DeadDestinationTime < 0 {
		return
	}
	reason := last.detail
	if last.host != "" {
		reason = fmt.Sprintf("%s[%s]: %s", last.host, last.addr, last.detail)
	}
	until := time.Now().Add(t.opts.DeadDestinationTime)
	t.opts.Logger.Warn("no host of the destination answered; its mail is deferred without connecting until the suspension ends",
		"destination", dest, "until", until, "reason", reason)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := t.opts.Suspensions.Suspend(ctx, dest, reason, until); err != nil {
		t.opts.Logger.Warn("suspension not shared with the other replicas", "destination", dest, "err", err)
	}
}

// Resume ends a suspension of dest (DestinationKey), if there is one: a
// host answered, or an operator asked for a retry.
func (t *Transport) Resume(ctx context.Context, dest string) {
	if t.opts.DeadDestinationTime < 0 {
		return
	}
	if _, _, ok := t.opts.Suspensions.Suspended(dest); !ok {
		return
	}
	t.opts.Logger.Info("suspension of the destination ended", "destination", dest)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := t.opts.Suspensions.Resume(ctx, dest); err != nil {
		t.opts.Logger.Warn("end of suspension not shared with the other replicas", "destination", dest, "err", err)
	}
}

// acquire takes a session slot of dest in this process, then one shared
// with the other replicas (Options.SharedLimit). It fails only when ctx
// ends: if the shared limit fails, the local one alone applies, the
// shared bound being politeness towards the remote, not safety.
func (t *Transport) acquire(ctx context.Context, dest string) (release func(), err error) {
	local, err := t.limit.acquire(ctx, dest)
	if err != nil || t.opts.SharedLimit == nil {
		return local, err
	}
	shared, err := t.opts.SharedLimit.Acquire(ctx, dest)
	switch {
	case err == nil:
		return func() { shared(); local() }, nil
	case ctx.Err() != nil:
		local()
		return nil, err
	default:
		t.opts.Logger.Warn("shared destination limit unavailable, using the local one", "destination", dest, "err", err)
		return local, nil
	}
}

// finishPending defers every undecided recipient with the last host
// failure.
func (t *Transport) finishPending(results []RecipientResult, pending []int, last hostFailure) {
	// Whatever a single host said, running out of hosts is temporary.
	enhanced := "4" + last.enhanced[1:]
	for _, i := range pending {
		results[i].Status = Temporary
		results[i].Enhanced = enhanced
		results[i].Reply = last.reply
		results[i].Detail = last.detail
		results[i].RemoteMTA = last.host
		results[i].RemoteAddr = last.addr
	}
}

func (t *Transport) tlsFor(ctx context.Context, rt route.Route, host route.Host) (TLSRequirement, error) {
	if rt.Smarthost != nil {
		// Credentials never travel in clear: TLS is required and the
		// certificate verified.
		cfg := t.opts.SmarthostTLS
		if cfg == nil {
			cfg = &tls.Config{}
		}
		return TLSRequirement{Mode: TLSRequired, Config: cfg}, nil
	}
	return t.opts.TLSPolicy.TLSFor(ctx, rt.Domain, host)
}

// attempt delivers the pending recipients through one address. It returns
// the recipients still pending, whether to stop trying other hosts (a
// local failure that another host would not cure), and the failure to
// report if nothing else decides.
func (t *Transport) attempt(ctx context.Context, rt route.Route, host route.Host, addr netip.Addr, req TLSRequirement,
	msg *Message, results []RecipientResult, pending []int, last hostFailure, answered *bool) ([]int, bool, hostFailure) {
	hostport := net.JoinHostPort(addr.String(), strconv.Itoa(host.Port))
	key := poolKey{host: host.Name, addr: hostport, mode: req.Mode}
	if sh := rt.Smarthost; sh != nil {
		key.smarthost, key.auth = true, sh.Username+"\x00"+sh.Password
	}
	noTLS := false
	freshTries := 0
	for {
		s, reused := t.pool.get(key)
		if s != nil {
			*answered = true
		}
		if s == nil {
			var hf *hostFailure
			s, hf = t.connect(ctx, rt, host, hostport, req, noTLS)
			if hf == nil || !hf.silent {
				*answered = true
			}
			if hf != nil {
				if hf.enhanced == errTLSFallback {
					// RFC 7435: the handshake failed and the policy allows
					// plaintext, so try this host again without TLS.
					t.opts.Logger.Warn("STARTTLS handshake failed, retrying without TLS",
						"domain", rt.Domain, "mx", host.Name, "addr", hostport, "err", hf.detail)
					noTLS = true
					continue
				}
				return pending, false, *hf
			}
		}
		stopWatch := context.AfterFunc(ctx, func() { s.conn.Close() })
		out := t.transaction(s, msg, results, pending)
		cancelled := !stopWatch() || ctx.Err() != nil
		if out.failure == nil && !cancelled {
			s.messages++
			if s.messages < t.opts.MaxMessagesPerConn && out.reusable {
				t.pool.put(key, s)
			} else {
				s.quit()
			}
			return out.pending, out.stop, last
		}
		s.close()
		if out.failure == nil {
			return out.pending, out.stop, last
		}
		if out.staleReuse && reused && freshTries == 0 {
			// A pooled session the peer had already closed: nothing was
			// decided, open a new one.
			freshTries++
			continue
		}
		return out.pending, out.stop, *out.failure
	}
}

type txOutcome struct {
	pending    []int
	failure    *hostFailure // host-level failure: try the next address
	stop       bool         // do not try other hosts
	reusable   bool         // the session is at a clean state
	staleReuse bool         // failed before anything was decided
}

// transaction runs MAIL, RCPT…, DATA on s for the pending recipients.
func (t *Transport) transaction(s *session, msg *Message, results []RecipientResult, pending []int) txOutcome {
	c := s.client
	fail := func(err error, enhanced, what string) *hostFailure {
		hf := &hostFailure{enhanced: enhanced, detail: what + ": " + err.Error(), host: s.host, addr: s.addr}
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			r := replyOf(se)
			hf.reply = &r
			hf.enhanced = enhancedOf(r)
			hf.detail = what + " rejected"
		}
		return hf
	}
	decide := func(i int, st Status, enhanced string, reply *Reply, detail string) {
		results[i] = RecipientResult{Address: results[i].Address, Status: st, Enhanced: enhanced, Reply: reply,
			RemoteMTA: s.host, RemoteAddr: s.addr, TLS: s.tls, Detail: detail}
	}
	decideReply := func(i int, se *smtp.SMTPError, detail string) {
		r := replyOf(se)
		st := Temporary
		if r.Code >= 500 && r.Code < 600 {
			st = Permanent
		}
		decide(i, st, enhancedOf(r), &r, detail)
	}
	remaining := func(decided map[int]bool) []int {
		var out []int
		for _, i := range pending {
			if !decided[i] {
				out = append(out, i)
			}
		}
		return out
	}

	// Local capability checks, before anything is sent (SMTP-LESSONS 24).
	hasUTF8, _ := c.Extension("SMTPUTF8")
	has8bit, _ := c.Extension("8BITMIME")
	useUTF8 := msg.UTF8 || !isASCII(msg.From)
	if !hasUTF8 {
		decided := map[int]bool{}
		for _, i := range pending {
			if useUTF8 || !isASCII(msg.Recipients[i].Address) {
				decide(i, Permanent, "5.6.7", nil, "the remote server does not support SMTPUTF8, which this address or message needs (RFC 6531)")
				decided[i] = true
			}
		}
		pending = remaining(decided)
		useUTF8 = false
		if len(pending) == 0 {
			return txOutcome{reusable: true}
		}
	} else {
		for _, i := range pending {
			useUTF8 = useUTF8 || !isASCII(msg.Recipients[i].Address)
		}
	}
	open, size := msg.Open, msg.Size
	if msg.EightBit && !has8bit && !useUTF8 {
		var err error
		if msg.SevenBit == nil {
			err = fmt.Errorf("%w: no 7-bit form of this message", downgrade.ErrMalformed)
		} else {
			var conv SevenBit
			conv, err = msg.SevenBit()
			open, size = conv.Open, conv.Size
		}
		if errors.Is(err, downgrade.ErrMalformed) {
			for _, i := range pending {
				decide(i, Permanent, "5.6.3", nil, "the remote server does not support 8BITMIME (RFC 6152) and the message cannot be converted to 7-bit: "+err.Error())
			}
			return txOutcome{reusable: true}
		}
		if err != nil {
			for _, i := range pending {
				decide(i, Temporary, "4.3.0", nil, "converting the queued message to 7-bit failed: "+err.Error())
			}
			return txOutcome{reusable: true, failure: &hostFailure{enhanced: "4.3.0", detail: "converting the queued message to 7-bit failed"}, stop: true}
		}
	}
	if limit, ok := c.MaxMessageSize(); ok && limit > 0 && size > int64(limit) {
		for _, i := range pending {
			decide(i, Permanent, "5.3.4", nil, fmt.Sprintf("message size %d exceeds the remote server's limit of %d (RFC 1870)", size, limit))
		}
		return txOutcome{reusable: true}
	}

	mailOpts := &smtp.MailOptions{Size: size, UTF8: useUTF8, EnvelopeID: msg.EnvID}
	switch strings.ToUpper(msg.Ret) {
	case "FULL":
		mailOpts.Return = smtp.DSNReturnFull
	case "HDRS":
		mailOpts.Return = smtp.DSNReturnHeaders
	}
	if !isPrintableASCII(mailOpts.EnvelopeID) {
		mailOpts.EnvelopeID = ""
	}
	if err := c.Mail(msg.From, mailOpts); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 && se.Code < 600 {
			// The sender is refused: that is this message's fate at this
			// domain, not the host's problem.
			for _, i := range pending {
				decideReply(i, se, "MAIL FROM rejected")
			}
			return txOutcome{reusable: c.Reset() == nil}
		}
		return txOutcome{pending: pending, failure: fail(err, "4.4.2", "MAIL FROM"), staleReuse: se == nil || se.Code == 421}
	}

	decided := map[int]bool{}
	var accepted []int
	for _, i := range pending {
		r := msg.Recipients[i]
		if err := c.Rcpt(r.Address, rcptOptions(r)); err != nil {
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code == 421 {
				// Connection lost or closing: recipients not yet
				// decided go to the next host.
				return txOutcome{pending: remaining(decided), failure: fail(err, "4.4.2", "RCPT TO")}
			}
			decideReply(i, se, "RCPT TO rejected")
			decided[i] = true
			continue
		}
		accepted = append(accepted, i)
	}
	if len(accepted) == 0 {
		return txOutcome{reusable: c.Reset() == nil}
	}

	w, err := c.Data()
	if err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code == 421 {
			return txOutcome{pending: accepted, failure: fail(err, "4.4.2", "DATA")}
		}
		for _, i := range accepted {
			decideReply(i, se, "DATA rejected")
		}
		return txOutcome{reusable: c.Reset() == nil}
	}

	body, err := open()
	if err != nil {
		// Another host would not help: the message cannot be read.
		// Closing without the final dot aborts the transaction.
		for _, i := range accepted {
			decide(i, Temporary, "4.3.0", nil, "cannot read the queued message: "+err.Error())
		}
		return txOutcome{failure: &hostFailure{enhanced: "4.3.0", detail: "cannot read the queued message"}, stop: true}
	}
	src := &errReader{r: crlf.NewReader(body)}
	_, copyErr := io.Copy(w, src)
	body.Close()
	if src.err != nil {
		// Never send the final dot after a short read: the remote would
		// deliver a truncated message.
		for _, i := range accepted {
			decide(i, Temporary, "4.3.0", nil, "reading the queued message failed: "+src.err.Error())
		}
		return txOutcome{failure: &hostFailure{enhanced: "4.3.0", detail: "reading the queued message failed"}, stop: true}
	}
	if copyErr != nil {
		return txOutcome{pending: accepted, failure: fail(copyErr, "4.4.2", "sending message data")}
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code == 421 {
			// RFC 1047: without a reply to the final dot we cannot know;
			// trying again risks a duplicate, giving up risks a loss.
			// Like Postfix, we try again.
			return txOutcome{pending: accepted, failure: fail(err, "4.4.2", "end of data")}
		}
		for _, i := range accepted {
			decideReply(i, se, "message rejected after DATA")
		}
		return txOutcome{reusable: true}
	}
	r := parseReply(250, resp.StatusText)
	for _, i := range accepted {
		decide(i, Delivered, enhancedOf(r), &r, "delivered")
	}
	return txOutcome{reusable: true}
}

// errTLSFallback marks a hostFailure that asks for a plaintext retry.
const errTLSFallback = "tls-fallback"

func rcptOptions(r Recipient) *smtp.RcptOptions {
	o := &smtp.RcptOptions{}
	for _, n := range r.Notify {
		o.Notify = append(o.Notify, smtp.DSNNotify(strings.ToUpper(n)))
	}
	if len(o.Notify) > 1 && containsFold(r.Notify, "NEVER") {
		o.Notify = []smtp.DSNNotify{smtp.DSNNotifyNever}
	}
	switch strings.ToUpper(r.ORCPTType) {
	case "RFC822":
		if isPrintableASCII(r.ORCPT) && r.ORCPT != "" {
			o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeRFC822, r.ORCPT
		}
	case "UTF-8":
		if utf8.ValidString(r.ORCPT) && r.ORCPT != "" {
			o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeUTF8, r.ORCPT
		}
	}
	return o
}

func containsFold(ss []string, s string) bool {
	for _, x := range ss {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// replyOf converts go-smtp's error into a Reply.
func replyOf(se *smtp.SMTPError) Reply {
	r := Reply{Code: se.Code, Text: se.Message}
	ec := se.EnhancedCode
	if ec != smtp.EnhancedCodeNotSet && ec != smtp.NoEnhancedCode && ec[0] > 0 {
		r.Enhanced = fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
	}
	return r
}

// parseReply splits "2.0.0 Ok: queued" into enhanced code and text.
func parseReply(code int, text string) Reply {
	r := Reply{Code: code, Text: text}
	if first, rest, ok := strings.Cut(text, " "); ok && isEnhanced(first) {
		r.Enhanced, r.Text = first, rest
	}
	return r
}

func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 {
			return false
		}
	}
	return true
}

// enhancedOf is the reply's enhanced code or, when the remote gave none,
// the generic X.0.0 of its class (RFC 3463 §3.1). A 5xx reply with a 4.x.x
// code or the reverse is classified by the reply code (RFC 3463 §2).
func enhancedOf(r Reply) string {
	class := strconv.Itoa(r.Code / 100)
	if r.Enhanced != "" && r.Enhanced[:1] == class {
		return r.Enhanced
	}
	if r.Enhanced != "" {
		return class + r.Enhanced[1:]
	}
	return class + ".0.0"
}
