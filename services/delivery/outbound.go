package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"

	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/services/delivery/internal/dkimsign"
	"github.com/petrel-mail/petrel/services/delivery/internal/downgrade"
	"github.com/petrel-mail/petrel/services/delivery/internal/queue"
	"github.com/petrel-mail/petrel/services/delivery/internal/route"
	"github.com/petrel-mail/petrel/services/delivery/internal/smtpout"
	"github.com/petrel-mail/petrel/services/store/storeclient"
)

// DKIMKeys finds the key that signs a sender domain's mail.
type DKIMKeys interface {
	// Signer returns the signer for domain, or nil when the domain has no
	// key (its mail goes out unsigned). An error means the answer is not
	// known now: the remote recipients are deferred rather than sent
	// unsigned.
	Signer(ctx context.Context, domain string) (*dkimsign.Signer, error)
}

// Remote is the Outbound of the service: recipients grouped by domain,
// each domain routed (route.Router) and carried in one SMTP session
// (smtpout.Transport), the message DKIM-signed once for all domains when
// the envelope sender's domain has a key.
type Remote struct {
	Router    *route.Router
	Transport *smtpout.Transport
	Blobs     blob.Store
	// Keys may be nil: nothing is signed.
	Keys DKIMKeys
	// MaxDomains bounds the domains of one entry sent to at once
	// (default 8); the transport bounds sessions per destination.
	MaxDomains int
	Logger     *slog.Logger
}

var _ Outbound = (*Remote)(nil)

// Send implements Outbound. It fails (everything deferred) only when the
// message cannot be read or signed; routing and SMTP failures are
// per-domain results.
func (r *Remote) Send(ctx context.Context, entry *queuev1.QueueEntry, rcpts []int) ([]queue.Result, error) {
	open := func() (io.ReadCloser, error) {
		rc, _, err := r.Blobs.Get(ctx, entry.GetBlobKey())
		if err != nil {
			return nil, fmt.Errorf("open message %s: %w", entry.GetBlobKey(), err)
		}
		return rc, nil
	}
	raw, size := open, entry.GetSize()
	var signer *dkimsign.Signer
	if r.Keys != nil {
		if dom := domainOf(entry.GetMailFrom()); dom != "" {
			var err error
			if signer, err = r.Keys.Signer(ctx, dom); err != nil {
				return nil, fmt.Errorf("DKIM key of %s: %w", dom, err)
			}
			if signer != nil {
				// Sign once: every domain gets the same bytes.
				if open, size, err = signer.Opener(raw); err != nil {
					return nil, fmt.Errorf("DKIM signing: %w", err)
				}
			}
		}
	}
	var sevenBit func() (smtpout.SevenBit, error)
	if entry.GetBody() == queuev1.Body_BODY_8BITMIME {
		sevenBit = sync.OnceValues(func() (smtpout.SevenBit, error) {
			return sevenBitOpener(raw, signer)
		})
	}
	// The message as every domain gets it; sendDomain adds recipients.
	form := smtpout.Message{
		From:     entry.GetMailFrom(),
		UTF8:     entry.GetSmtputf8(),
		EightBit: entry.GetBody() == queuev1.Body_BODY_8BITMIME,
		Size:     size,
		EnvID:    entry.GetDsnEnvid(),
		Open:     open,
		SevenBit: sevenBit,
	}
	switch entry.GetDsnRet() {
	case queuev1.DSNReturn_DSN_RETURN_FULL:
		form.Ret = "FULL"
	case queuev1.DSNReturn_DSN_RETURN_HDRS:
		form.Ret = "HDRS"
	}

	// Recipients by domain, in RCPT order within a domain.
	var domains []string
	byDomain := map[string][]int{}
	for _, i := range rcpts {
		d := domainOf(entry.GetRecipients()[i].GetAddress())
		if _, ok := byDomain[d]; !ok {
			domains = append(domains, d)
		}
		byDomain[d] = append(byDomain[d], i)
	}

	limit := r.MaxDomains
	if limit <= 0 {
		limit = 8
	}
	sem := make(chan struct{}, limit)
	var (
		mu  sync.Mutex
		out []queue.Result
		wg  sync.WaitGroup
	)
	for _, d := range domains {
		idx := byDomain[d]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			res := r.sendDomain(ctx, entry, d, idx, form)
			mu.Lock()
			out = append(out, res...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return out, nil
}

// Resume ends the suspension of the destinations mail for these
// recipient domains goes to (each domain, or the smarthost): an operator's
// retry is meant to try now, as Postfix's flush clears its dead
// destinations.
func (r *Remote) Resume(ctx context.Context, domains []string) {
	for _, d := range domains {
		r.Transport.Resume(ctx, smtpout.DestinationKey(route.Route{Domain: d, Smarthost: r.Router.Smarthost}))
	}
}

func (r *Remote) sendDomain(ctx context.Context, entry *queuev1.QueueEntry, domain string, idx []int, form smtpout.Message) []queue.Result {
	out := make([]queue.Result, 0, len(idx))
	if domain == "" {
		for _, i := range idx {
			out = append(out, queue.Result{Index: i, Outcome: queue.Permanent, Reply: "550 5.1.3 bad recipient address syntax"})
		}
		return out
	}
	rt, err := r.Router.Route(ctx, domain)
	if err != nil {
		var re *route.Error
		res := queue.Result{Outcome: queue.Temporary, Reply: "451 4.4.3 routing failed"}
		if errors.As(err, &re) {
			if re.Temporary() {
				res.Reply = "451 " + re.Status + " " + re.Msg
			} else {
				res = queue.Result{Outcome: queue.Permanent, Reply: "550 " + re.Status + " " + re.Msg}
			}
		}
		r.logger().Info("no route", "domain", domain, "error", err)
		for _, i := range idx {
			res.Index = i
			out = append(out, res)
		}
		return out
	}
	msg := &form
	for _, i := range idx {
		rc := entry.GetRecipients()[i]
		sr := smtpout.Recipient{Address: rc.GetAddress(), ORCPTType: rc.GetOrcptType(), ORCPT: rc.GetOrcpt()}
		for _, n := range rc.GetNotify() {
			switch n {
			case queuev1.DSNNotify_DSN_NOTIFY_NEVER:
				sr.Notify = append(sr.Notify, "NEVER")
			case queuev1.DSNNotify_DSN_NOTIFY_SUCCESS:
				sr.Notify = append(sr.Notify, "SUCCESS")
			case queuev1.DSNNotify_DSN_NOTIFY_FAILURE:
				sr.Notify = append(sr.Notify, "FAILURE")
			case queuev1.DSNNotify_DSN_NOTIFY_DELAY:
				sr.Notify = append(sr.Notify, "DELAY")
			}
		}
		msg.Recipients = append(msg.Recipients, sr)
	}
	for k, res := range r.Transport.Deliver(ctx, rt, msg) {
		out = append(out, resultOf(idx[k], res))
	}
	return out
}

// sevenBitOpener returns the message of raw converted to 7-bit MIME
// (package downgrade) and, with a signer, signed after the conversion, so
// that the signature covers the bytes sent. The message is converted once
// here, to sign it or to measure it (SIZE, RFC 1870) and find before any
// transaction that it cannot be converted (downgrade.ErrMalformed, a
// permanent failure).
func sevenBitOpener(raw func() (io.ReadCloser, error), signer *dkimsign.Signer) (smtpout.SevenBit, error) {
	conv := func() (io.ReadCloser, error) {
		rc, err := raw()
		if err != nil {
			return nil, err
		}
		return downgrade.Reader(rc), nil
	}
	if signer != nil {
		open, size, err := signer.Opener(conv)
		if err != nil {
			return smtpout.SevenBit{}, fmt.Errorf("DKIM signing the 7-bit message: %w", err)
		}
		return smtpout.SevenBit{Open: open, Size: size}, nil
	}
	rc, err := conv()
	if err != nil {
		return smtpout.SevenBit{}, err
	}
	defer rc.Close()
	size, err := io.Copy(io.Discard, rc)
	if err != nil {
		return smtpout.SevenBit{}, err
	}
	return smtpout.SevenBit{Open: conv, Size: size}, nil
}

// resultOf maps a transport result to the queue's: the remote reply when
// one decided, else our enhanced code and explanation.
func resultOf(i int, res smtpout.RecipientResult) queue.Result {
	q := queue.Result{Index: i}
	switch res.Status {
	case smtpout.Delivered:
		q.Outcome = queue.Delivered
	case smtpout.Permanent:
		q.Outcome = queue.Permanent
	default:
		q.Outcome = queue.Temporary
	}
	if res.Reply != nil {
		q.Reply = res.Reply.String()
		q.RemoteMTA = res.RemoteMTA
		return q
	}
	code := "451"
	switch res.Status {
	case smtpout.Permanent:
		code = "550"
	case smtpout.Delivered:
		code = "250"
	}
	q.Reply = code + " " + res.Enhanced + " " + oneLine(res.Detail)
	return q
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// domainOf is the lower-cased domain of an address, "" if it has none.
func domainOf(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || at == len(addr)-1 {
		return ""
	}
	return strings.ToLower(addr[at+1:])
}

func (r *Remote) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// StoreKeys is DKIMKeys backed by the store's DKIMService, with a short
// cache: every remote message asks, and keys change rarely.
type StoreKeys struct {
	Client storev1.DKIMServiceClient
	// TTL of a cached answer (default 5 minutes), including "no key".
	TTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu    sync.Mutex
	cache map[string]cachedKey
}

type cachedKey struct {
	signer  *dkimsign.Signer
	expires time.Time
}

// Signer implements DKIMKeys.
func (s *StoreKeys) Signer(ctx context.Context, domain string) (*dkimsign.Signer, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	ttl := s.TTL
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	s.mu.Lock()
	if c, ok := s.cache[domain]; ok && now().Before(c.expires) {
		s.mu.Unlock()
		return c.signer, nil
	}
	s.mu.Unlock()

	var signer *dkimsign.Signer
	resp, err := s.Client.GetSigningKey(ctx, &storev1.GetSigningKeyRequest{Domain: domain})
	switch {
	case err == nil:
		key, perr := dkimsign.ParsePrivateKey(resp.GetPrivateKeyPem())
		if perr != nil {
			return nil, fmt.Errorf("key of %s from the store: %w", domain, perr)
		}
		if signer, err = dkimsign.NewSigner(dkimsign.Key{Domain: resp.GetDomain(), Selector: resp.GetSelector(), Signer: key}); err != nil {
			return nil, err
		}
	case errors.Is(err, storeclient.ErrNotFound), errors.Is(err, storeclient.ErrUnimplemented):
		// Not ours, no key, or a store without DKIM keys: unsigned.
	default:
		return nil, fmt.Errorf("get signing key: %w", err)
	}
	s.mu.Lock()
	if s.cache == nil {
		s.cache = map[string]cachedKey{}
	}
	s.cache[domain] = cachedKey{signer: signer, expires: now().Add(ttl)}
	s.mu.Unlock()
	return signer, nil
}
