// Package server implements the store's gRPC services
// (proto/petrel/store/v1): thin handlers that take the principal from the
// verified token (auth.FromContext), turn it into a repo.Scope, call the
// repository and the blob store, publish a change event after every
// committed change, and classify errors once (errors.go).
//
// IMAP semantics are those of RFC 9051 and the extensions named in package
// repo (CONDSTORE/QRESYNC RFC 7162, UIDPLUS RFC 4315, MOVE RFC 6851, QUOTA
// RFC 9208); messages are RFC 5322 / MIME (RFC 2045) objects stored once.
//
// # Structure
//
// Each gRPC service is its own type with its own constructor, built from
// the shared Deps (which every constructor copies and never changes):
//
//	NewMailboxServer(d) *MailboxServer   // mailbox.go
//	NewMessageServer(d) *MessageServer   // message.go, body.go (Search: search.go)
//	directory.go, admin.go               // DirectoryService, AdminService
//
// A new service adds a file with its type and constructor and uses the
// helpers here: callerScope for the account of a session, lookupMailbox,
// the flag and UID set conversions, d.publish for events and toStatus for
// every error it returns. Register all of them with Register.
//
// Every handler returns errors through toStatus; a handler never builds a
// status from err.Error().
package server

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/services/store/internal/auth"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// DefaultMaxMessageSize is the largest message AppendMessage accepts when
// Deps.MaxMessageSize is zero.
const DefaultMaxMessageSize = 64 << 20

// Deps is what the handlers need. Repo, Blobs and Events are required.
type Deps struct {
	Repo   repo.Repository
	Blobs  blob.Store
	Events *Events
	Logger *slog.Logger
	// MaxMessageSize bounds AppendMessage and Deliver; DefaultMaxMessageSize
	// when zero.
	MaxMessageSize int64
	// Now is the clock (internal dates, object keys); time.Now when nil.
	Now func() time.Time
}

func (d Deps) withDefaults() Deps {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.MaxMessageSize <= 0 {
		d.MaxMessageSize = DefaultMaxMessageSize
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return d
}

// Validate reports the missing dependencies.
func (d Deps) Validate() error {
	var errs []error
	if d.Repo == nil {
		errs = append(errs, errors.New("server: Repo is required"))
	}
	if d.Blobs == nil {
		errs = append(errs, errors.New("server: Blobs is required"))
	}
	if d.Events == nil {
		errs = append(errs, errors.New("server: Events is required"))
	}
	return errors.Join(errs...)
}

// Register registers the services built here on s.
func Register(s grpc.ServiceRegistrar, mailboxes *MailboxServer, messages *MessageServer) {
	storev1.RegisterMailboxServiceServer(s, mailboxes)
	storev1.RegisterMessageServiceServer(s, messages)
}

// callerScope returns the account a session principal acts for. The
// interceptor has already refused every other kind of principal for the
// mailbox and message services; this checks again because a missing
// principal must never become the zero scope.
func callerScope(ctx context.Context) (repo.Scope, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.Kind != auth.KindSession {
		return repo.Scope{}, withReason(codes.Unauthenticated, "authentication required", storev1.Reason_REASON_AUTH_FAILED)
	}
	tenant, err1 := strconv.ParseInt(p.TenantID, 10, 64)
	account, err2 := strconv.ParseInt(p.AccountID, 10, 64)
	if err1 != nil || err2 != nil || tenant <= 0 || account <= 0 {
		return repo.Scope{}, withReason(codes.Unauthenticated, "authentication required", storev1.Reason_REASON_AUTH_FAILED)
	}
	return repo.Scope{TenantID: tenant, AccountID: account}, nil
}

func idString(id int64) string { return strconv.FormatInt(id, 10) }

// System flag names (RFC 9051 §2.3.2), by bit.
var systemFlagNames = []struct {
	bit  repo.SystemFlags
	name string
}{
	{repo.FlagSeen, `\Seen`},
	{repo.FlagAnswered, `\Answered`},
	{repo.FlagFlagged, `\Flagged`},
	{repo.FlagDeleted, `\Deleted`},
	{repo.FlagDraft, `\Draft`},
}

// parseFlags turns flag names into repo.Flags. \Recent is not a stored
// flag (it is the mailbox's watermark) and is ignored, as a client may not
// set it (RFC 3501 §2.3.2). Any other backslash name is refused.
func parseFlags(names []string) (repo.Flags, error) {
	var f repo.Flags
	for _, n := range names {
		if n == "" {
			return f, invalid("empty flag name")
		}
		if n[0] != '\\' {
			if !validKeyword(n) {
				return f, invalid("invalid keyword")
			}
			f.Keywords = append(f.Keywords, n)
			continue
		}
		if strings.EqualFold(n, `\Recent`) {
			continue
		}
		found := false
		for _, sf := range systemFlagNames {
			if strings.EqualFold(n, sf.name) {
				f.System |= sf.bit
				found = true
			}
		}
		if !found {
			return f, invalid("unknown system flag")
		}
	}
	return f, nil
}

// validKeyword: an IMAP atom without the flag-excluded characters
// (RFC 9051 §9 flag-keyword).
func validKeyword(k string) bool {
	if len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

func formatFlags(f repo.Flags) []string {
	out := make([]string, 0, 5+len(f.Keywords))
	for _, sf := range systemFlagNames {
		if f.System&sf.bit != 0 {
			out = append(out, sf.name)
		}
	}
	return append(out, f.Keywords...)
}

// uidSet converts a request's UID set; nil or empty means every message.
// A stop of 0 means "*".
func uidSet(s *storev1.UIDSet) repo.UIDSet {
	if s == nil || len(s.GetRanges()) == 0 {
		return nil
	}
	out := make(repo.UIDSet, 0, len(s.GetRanges()))
	for _, r := range s.GetRanges() {
		start, stop := r.GetStart(), r.GetStop()
		if stop == 0 {
			stop = ^uint32(0)
		}
		if start == 0 {
			start = 1
		}
		if start > stop {
			start, stop = stop, start
		}
		out = append(out, repo.UIDRange{Start: start, Stop: stop})
	}
	return out
}

// uidSetOf compresses ascending UIDs into ranges.
func uidSetOf(uids []uint32) *storev1.UIDSet {
	s := &storev1.UIDSet{}
	for _, u := range uids {
		n := len(s.Ranges)
		if n > 0 && s.Ranges[n-1].Stop+1 == u {
			s.Ranges[n-1].Stop = u
			continue
		}
		s.Ranges = append(s.Ranges, &storev1.UIDRange{Start: u, Stop: u})
	}
	return s
}

func rangesOf(rs []repo.UIDRange) *storev1.UIDSet {
	s := &storev1.UIDSet{Ranges: make([]*storev1.UIDRange, len(rs))}
	for i, r := range rs {
		s.Ranges[i] = &storev1.UIDRange{Start: r.Start, Stop: r.Stop}
	}
	return s
}

func (s repoSet) contains(u uint32) bool {
	if len(s) == 0 {
		return true
	}
	for _, r := range s {
		if u >= r.Start && u <= r.Stop {
			return true
		}
	}
	return false
}

type repoSet repo.UIDSet

// lookupMailbox resolves a mailbox name in the caller's account.
func lookupMailbox(ctx context.Context, r repo.Repository, s repo.Scope, name string) (repo.Mailbox, error) {
	if name == "" {
		return repo.Mailbox{}, invalid("mailbox name is required")
	}
	return r.MailboxByName(ctx, s, name)
}
