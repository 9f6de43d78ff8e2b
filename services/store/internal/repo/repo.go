// Package repo is the storage contract of the mail store: the domain types
// (tenants, accounts, mailboxes, message entries, objects) and the
// Repository interface that the gRPC handlers call. pgrepo implements it on
// PostgreSQL; an embedded engine for standalone mode can implement the same
// contract, and repotest is the conformance suite both must pass.
//
// Every method that touches mail is scoped by a Scope (tenant and account),
// passed explicitly and never inferred. An object that exists but belongs to
// another account is reported as ErrNotFound, never as "forbidden", so that
// ids cannot be probed across accounts.
//
// IMAP semantics follow RFC 9051 (IMAP4rev2) and RFC 3501 (mailbox naming,
// LIST wildcards §6.3.8, DELETE/RENAME §6.3.4–5), RFC 7162 (CONDSTORE and
// QRESYNC: MODSEQ, UNCHANGEDSINCE, VANISHED), RFC 6851 (MOVE), RFC 4315
// (UIDPLUS COPYUID), RFC 6154 (special-use) and RFC 9208 (QUOTA).
//
// Mailbox names are UTF-8 (RFC 9051 §5.1; modified UTF-7 for IMAP4rev1
// clients is the frontend's job), with '/' as the only hierarchy delimiter.
// INBOX is case-insensitive and always stored as "INBOX".
package repo

import (
	"context"
	"errors"
	"time"

	"github.com/petrel-mail/petrel/services/store/internal/mimeparse"
)

// Sentinel errors. Implementations wrap them with context; callers test with
// errors.Is.
var (
	// ErrNotFound: the tenant, account, mailbox, message or object does not
	// exist in the caller's scope (including: it exists in another one).
	ErrNotFound = errors.New("repo: not found")
	// ErrExists: a mailbox, domain, account or alias with that name exists.
	ErrExists = errors.New("repo: already exists")
	// ErrOverQuota: the change would exceed the account's storage or message
	// limit (RFC 9208 / IMAP [OVERQUOTA], SMTP 452 4.2.2 / 552 5.2.2).
	ErrOverQuota = errors.New("repo: over quota")
	// ErrInvalidName: a malformed mailbox name or address.
	ErrInvalidName = errors.New("repo: invalid name")
	// ErrNotAllowed: the operation is refused by IMAP rules (deleting INBOX,
	// deleting a \Noselect mailbox that has children, renaming a mailbox
	// into itself).
	ErrNotAllowed = errors.New("repo: operation not allowed")
	// ErrNoSelect: the mailbox is a \Noselect placeholder and holds no
	// messages.
	ErrNoSelect = errors.New("repo: mailbox is not selectable")
	// ErrUIDsExhausted: UIDNEXT would exceed 2^32-1; the mailbox must be
	// recreated (new UIDVALIDITY) before it accepts more messages.
	ErrUIDsExhausted = errors.New("repo: mailbox UID space exhausted")
)

// Delimiter is the one hierarchy delimiter of stored mailbox names.
const Delimiter = '/'

// Inbox is the stored name of every account's INBOX.
const Inbox = "INBOX"

// Scope names the account an operation acts for. The store derives it from
// a verified session token; the repository trusts it but checks that the
// account belongs to the tenant on every statement.
type Scope struct {
	TenantID  int64
	AccountID int64
}

// SystemFlags is the set of IMAP system flags of a message, as a bitmask.
// \Recent is not stored per message: it is the mailbox's recent watermark.
type SystemFlags uint16

// System flag bits (RFC 9051 §2.3.2).
const (
	FlagSeen SystemFlags = 1 << iota
	FlagAnswered
	FlagFlagged
	FlagDeleted
	FlagDraft
)

// Flags is a message's complete flag set: system flags and keywords.
// Keywords compare case-insensitively (RFC 9051 §2.3.2); the spelling first
// used in an account is the one kept.
type Flags struct {
	System   SystemFlags
	Keywords []string
}

// Tenant is one hosting customer.
type Tenant struct {
	ID   int64
	Name string
	// Limits apply to the whole tenant; 0 means unlimited.
	MaxAccounts     int64
	MaxDomains      int64
	MaxAccountQuota int64 // the largest per-account byte limit it may set
}

// Domain is a mail domain of a tenant (lower-case, unique across tenants).
type Domain struct {
	ID       int64
	TenantID int64
	Name     string
}

// Account is a mail user.
type Account struct {
	ID           int64
	TenantID     int64
	DomainID     int64
	LocalPart    string
	Address      string // local@domain
	PasswordHash string // PHC string (argon2id), never a password
	Disabled     bool
}

// Quota is an account's limits and usage (RFC 9208 STORAGE and MESSAGE
// resources). Limits of 0 mean unlimited. Usage counters are signed so that
// a drift below zero shows up as a negative number, not as 2^64-1.
type Quota struct {
	LimitBytes    int64
	LimitMessages int64
	UsedBytes     int64
	UsedMessages  int64
}

// Mailbox is a mailbox's state row: what SELECT and STATUS answer without
// touching any message.
type Mailbox struct {
	ID            int64
	Name          string
	SpecialUse    string // e.g. `\Sent`, RFC 6154; empty if none
	NoSelect      bool
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	Messages      int64
	Unseen        int64
	Deleted       int64
	Size          int64
	// RecentUID is the \Recent watermark: messages with a UID above it are
	// \Recent to the next session that claims them (ClaimRecent).
	RecentUID uint32
	// ForgottenModSeq: tombstones of expunges at or below it were removed;
	// ChangesSince from an older MODSEQ cannot list all vanished UIDs.
	ForgottenModSeq uint64
}

// ListEntry is one LIST answer line (RFC 9051 §7.3.1).
type ListEntry struct {
	Name        string
	HasChildren bool
	NoSelect    bool
	Subscribed  bool
	// NonExistent: a subscription whose mailbox does not exist (LIST
	// (SUBSCRIBED), RFC 5258 §3).
	NonExistent bool
	SpecialUse  string
}

// UIDRange is an inclusive range of UIDs.
type UIDRange struct{ Start, Stop uint32 }

// UIDSet is a set of UID ranges; nil means every message.
type UIDSet []UIDRange

// AllUIDs selects every message.
var AllUIDs UIDSet

// FetchFields selects what FetchMeta reads; UID and MODSEQ are always read.
type FetchFields uint32

// Fields that FetchMeta can read.
const (
	FetchFlags FetchFields = 1 << iota
	FetchInternalDate
	FetchSize
	FetchObject // ObjectID and ObjectKey, to read the body from S3
	FetchEnvelope
	FetchBodyStructure // BodyStructure and Body
	FetchParts
	FetchHeader
)

// MessageMeta is one message's metadata, with only the requested fields set.
// Size, Parts and Header describe the message as served: its HeaderPrefix
// (if any) followed by the object's bytes, so every offset and length
// already counts the prefix.
type MessageMeta struct {
	UID           uint32
	ModSeq        uint64
	Flags         Flags
	InternalDate  time.Time
	Size          int64
	ObjectID      int64
	ObjectKey     string
	Envelope      []byte
	BodyStructure []byte
	Body          []byte
	Parts         []mimeparse.Part
	Header        []byte
	// HeaderPrefix is read with FetchObject: the bytes served before the
	// object (Delivery.HeaderPrefix), nil if none.
	HeaderPrefix []byte
}

// AppendRequest adds one message to a mailbox.
type AppendRequest struct {
	ObjectID     int64
	Flags        Flags
	InternalDate time.Time
}

// AppendResult is where an added message landed (RFC 4315 APPENDUID).
type AppendResult struct {
	MailboxID   int64
	UIDValidity uint32
	UID         uint32
	ModSeq      uint64
}

// Delivery links one stored object into the INBOX (or another mailbox by
// name) of several recipients, idempotently per (DeliveryID, recipient).
type Delivery struct {
	TenantID   int64
	DeliveryID string  // the queue id; redelivery with the same id is a no-op
	Recipients []int64 // account ids, all of TenantID
	Mailbox    string  // "" means INBOX
	ObjectID   int64
	Flags      Flags
	// InternalDate: the time of delivery; zero means now.
	InternalDate time.Time
	// HeaderPrefix holds per-recipient header lines (Return-Path:,
	// Delivered-To:) served before the shared object; see
	// CheckHeaderPrefix. The message's size counts them.
	HeaderPrefix map[int64][]byte
	// NewObject, when set, records the object in the same transaction as
	// the delivery (as CreateObject would) and ObjectID is ignored: one
	// round trip for the whole delivery.
	NewObject *NewObject
}

// NewObject is an object to record with its parsed metadata.
type NewObject struct {
	Key    string
	Parsed *mimeparse.Parsed
}

// DeliveryResult is the outcome for one recipient. Err is nil, ErrOverQuota
// or ErrNotFound (no such account or mailbox); Duplicate reports that this
// (delivery, recipient) was delivered before and the earlier entry is
// returned.
type DeliveryResult struct {
	AccountID int64
	AppendResult
	Duplicate bool
	Err       error
}

// FlagOp is how StoreFlags combines the given flags with the current ones.
type FlagOp int

// STORE operations (RFC 9051 §6.4.6).
const (
	FlagsReplace FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// FlagChange is a message whose flags changed.
type FlagChange struct {
	UID    uint32
	ModSeq uint64
	Flags  Flags
}

// StoreResult reports a StoreFlags: the messages changed, with their new
// MODSEQ, and the UIDs refused because their MODSEQ was above
// UNCHANGEDSINCE (RFC 7162 §3.1.3 [MODIFIED]).
type StoreResult struct {
	Changed  []FlagChange
	Modified []uint32
}

// UIDPair maps a source UID to its copy (RFC 4315 COPYUID).
type UIDPair struct{ Src, Dst uint32 }

// CopyResult reports a COPY or MOVE.
type CopyResult struct {
	DstUIDValidity uint32
	Map            []UIDPair // ordered by source UID
	// SrcModSeq is the source mailbox's MODSEQ of the expunge (MOVE only).
	SrcModSeq uint64
}

// ExpungeResult lists the expunged UIDs in ascending order.
type ExpungeResult struct {
	UIDs   []uint32
	ModSeq uint64
}

// Changes answers CHANGEDSINCE / QRESYNC (RFC 7162 §3.2.5, §3.2.10).
type Changes struct {
	HighestModSeq uint64
	Changed       []FlagChange // UID order
	Vanished      []uint32     // ascending
	// TooOld: tombstones older than the asked MODSEQ were forgotten, so
	// Vanished may be incomplete; the client must be sent every UID it
	// could know of (RFC 7162 §3.2.10 allows a superset).
	TooOld bool
}

// Object is one stored S3 object and its reference count.
type Object struct {
	ID       int64
	TenantID int64
	Key      string
	Size     int64
	RefCount int64
}

// UsageReport is the result of recomputing an account's counters.
type UsageReport struct {
	Before, After Quota
	// MailboxesFixed counts mailboxes whose counters were wrong.
	MailboxesFixed int
}

// Repository is the whole storage contract.
type Repository interface {
	Directory
	Mailboxes
	Messages
	Objects
	Admin
	Searcher
	DKIMKeys
	Close()
}

// Directory manages tenants, domains and accounts.
type Directory interface {
	CreateTenant(ctx context.Context, name string) (Tenant, error)
	CreateDomain(ctx context.Context, tenantID int64, name string) (Domain, error)
	// CreateAccount creates the account with its INBOX (subscribed).
	CreateAccount(ctx context.Context, tenantID, domainID int64, localPart, passwordHash string) (Account, error)
	// LookupAddress returns the account an address delivers to: an account,
	// else an alias (its targets), else the domain's catch-all alias.
	LookupAddress(ctx context.Context, address string) ([]Scope, error)
	// CreateAlias maps local@domain (localPart "" for the catch-all) to
	// target addresses.
	CreateAlias(ctx context.Context, tenantID, domainID int64, localPart string, targets []string) error
	SetQuota(ctx context.Context, s Scope, limitBytes, limitMessages int64) error
	GetQuota(ctx context.Context, s Scope) (Quota, error)
	// RecomputeUsage recounts the account's usage and its mailboxes'
	// counters from the message rows, fixes them, and reports the drift.
	RecomputeUsage(ctx context.Context, s Scope) (UsageReport, error)
}

// Mailboxes manages the mailbox tree.
type Mailboxes interface {
	// CreateMailbox creates name and any missing parents (RFC 9051 §6.3.4).
	CreateMailbox(ctx context.Context, s Scope, name, specialUse string) (Mailbox, error)
	// DeleteMailbox removes a mailbox and its messages. A mailbox with
	// children keeps its name as \Noselect (RFC 9051 §6.3.5); deleting a
	// \Noselect mailbox with children, or INBOX, is ErrNotAllowed.
	DeleteMailbox(ctx context.Context, s Scope, name string) error
	// RenameMailbox renames a mailbox and its children; renaming INBOX moves
	// its messages to a new mailbox and leaves INBOX empty (§6.3.6).
	RenameMailbox(ctx context.Context, s Scope, from, to string) error
	Subscribe(ctx context.Context, s Scope, name string) error
	Unsubscribe(ctx context.Context, s Scope, name string) error
	// ListMailboxes answers LIST/LSUB reference and pattern (RFC 9051
	// §6.3.9: '*' matches anything, '%' anything but the delimiter).
	ListMailboxes(ctx context.Context, s Scope, reference, pattern string, subscribedOnly bool) ([]ListEntry, error)
	// MailboxByName returns the state row (SELECT, STATUS).
	MailboxByName(ctx context.Context, s Scope, name string) (Mailbox, error)
	// MailboxByID returns the state row (STATUS, reselect).
	MailboxByID(ctx context.Context, s Scope, id int64) (Mailbox, error)
	// Keywords returns the names of the account's keywords in the spelling
	// first used, sorted case-insensitively (the FLAGS and PERMANENTFLAGS
	// of SELECT, RFC 9051 §7.3.5: a superset of those on messages is
	// allowed).
	Keywords(ctx context.Context, s Scope) ([]string, error)
	// ClaimRecent returns the first UID that is \Recent for the calling
	// session (0 if none) and moves the watermark past every message.
	ClaimRecent(ctx context.Context, s Scope, mailboxID int64) (uint32, error)
	// PruneExpunged forgets expunge tombstones recorded before the given
	// time and raises the mailboxes' ForgottenModSeq marks.
	PruneExpunged(ctx context.Context, before time.Time) (int64, error)
	// CleanSearchIndex brings the SEARCH index's recent additions into
	// the index proper, off the delivery path; it returns a measure of
	// the work done (0: nothing was pending).
	CleanSearchIndex(ctx context.Context) (int64, error)
}

// Messages reads and changes message entries.
type Messages interface {
	Append(ctx context.Context, s Scope, mailboxID int64, req AppendRequest) (AppendResult, error)
	// Deliver is idempotent per (DeliveryID, recipient).
	Deliver(ctx context.Context, d Delivery) ([]DeliveryResult, error)
	// DeliverBatch is Deliver for several deliveries at once (one
	// transaction when it can), with one result and error per delivery.
	DeliverBatch(ctx context.Context, ds []Delivery) ([][]DeliveryResult, []error)
	// UIDs returns the mailbox's UIDs as ascending, maximal ranges.
	UIDs(ctx context.Context, s Scope, mailboxID int64) ([]UIDRange, error)
	// FetchMeta streams the messages in uids (nil: all) whose MODSEQ is
	// above changedSince, in UID order, to fn.
	FetchMeta(ctx context.Context, s Scope, mailboxID int64, uids UIDSet, fields FetchFields, changedSince uint64, fn func(*MessageMeta) error) error
	// StoreFlags changes flags; unchangedSince 0 means no condition.
	StoreFlags(ctx context.Context, s Scope, mailboxID int64, uids UIDSet, op FlagOp, flags Flags, unchangedSince uint64) (StoreResult, error)
	Copy(ctx context.Context, s Scope, srcMailboxID int64, uids UIDSet, dstMailboxID int64) (CopyResult, error)
	// Move is one transaction (RFC 6851).
	Move(ctx context.Context, s Scope, srcMailboxID int64, uids UIDSet, dstMailboxID int64) (CopyResult, error)
	// Expunge removes the \Deleted messages (of uids, if not nil).
	Expunge(ctx context.Context, s Scope, mailboxID int64, uids UIDSet) (ExpungeResult, error)
	ChangesSince(ctx context.Context, s Scope, mailboxID int64, modSeq uint64) (Changes, error)
}

// Objects manages stored S3 objects and their metadata.
type Objects interface {
	// CreateObject records an object (upsert by key) with its parsed
	// metadata, stored once however many mailboxes refer to it. A new
	// object has no reference; it is collected after the grace period
	// unless something refers to it. Upserting an unreferenced object
	// restarts its grace period.
	CreateObject(ctx context.Context, tenantID int64, key string, p *mimeparse.Parsed) (int64, error)
	GetObject(ctx context.Context, tenantID, objectID int64) (Object, error)
	// Collect deletes objects unreferenced for longer than grace: deleteFn
	// removes the bytes (S3) while the row is locked, then the row goes.
	// It returns how many objects were removed.
	Collect(ctx context.Context, grace time.Duration, deleteFn func(ctx context.Context, tenantID int64, key string) error) (int, error)
	// HoldObject keeps the tenant's object key from Collect until
	// ReleaseObject with the same holder, whether or not the object is
	// recorded yet. Idempotent. It restarts the grace period of a recorded
	// unreferenced object, and waits for a Collect that has the object
	// claimed, so that once it returns the bytes are either kept or were
	// already gone.
	HoldObject(ctx context.Context, tenantID int64, key, holder string) error
	// ReleaseObject ends a hold (idempotent) and restarts the grace period
	// of the object if nothing references it.
	ReleaseObject(ctx context.Context, tenantID int64, key, holder string) error
}
