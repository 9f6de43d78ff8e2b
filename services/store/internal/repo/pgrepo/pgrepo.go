// Package pgrepo implements repo.Repository on PostgreSQL with pgx v5.
//
// # Invariants
//
//   - UID and MODSEQ come from the mailbox row, updated in the transaction
//     that inserts or changes the messages and locked until it commits.
//     Every writer of a mailbox's messages holds that row lock, so commit
//     order is UID order is MODSEQ order: a reader never sees UID N+1
//     without N, nor MODSEQ M+1 without M (RFC 7162 §3.1).
//   - One MODSEQ per transaction and mailbox: every message changed by one
//     command gets the same new MODSEQ, which is also the mailbox's
//     HIGHESTMODSEQ.
//   - Mailbox counters (messages, unseen, deleted, size), account usage
//     and object reference counts change in the same transaction as the
//     message rows; RecomputeUsage recounts them. Quota limits are enforced
//     by the condition of the UPDATE that raises usage.
//   - Every statement is keyed by the account (and the tenant where the
//     account or mailbox row is first read); no statement selects messages
//     by UID or mailbox id alone.
//   - An object row is deleted only by Collect, which locks it, re-checks
//     that it is still unreferenced and past its grace period, deletes the
//     bytes, then the row. Anything that adds a reference locks the row
//     with an UPDATE first, so either it waits for the collector and sees
//     the row gone (ErrNotFound, nothing referenced), or the collector
//     skips the row.
//
// # Lock order
//
// Transactions lock rows in this order, each kind in ascending id order:
//
//  1. accounts row (mailbox tree changes, quota changes)
//  2. mailboxes rows, by id
//  3. messages rows (always under their mailbox's lock)
//  4. objects rows, by id
//
// deliveries, expunged, keywords and subscriptions rows are inserted or
// deleted under the locks above and are never locked on their own.
//
// # Transactions
//
// Transactions are short: MIME parsing and S3 I/O happen before BEGIN
// (only Collect calls out, per small batch, while holding its row locks).
// The pool sets lock_timeout, statement_timeout and
// idle_in_transaction_session_timeout on every connection so that a leaked
// transaction cannot hold a mailbox. Deadlocks and serialization failures
// are retried a few times.
//
// Append and Deliver run as one server-side function call (petrel_deliver,
// migration 0030): one round trip, however many recipients. A Deliver with
// NewObject also records the object in that call: the existing row is
// only read until the references are added (lock 4, last), and a new row
// is inserted last with its final reference count; two deliveries
// recording the same new key race on its unique index, and the loser
// retries (serialization_failure) and finds the row.
//
// A message row may carry a header prefix (header lines of one recipient,
// served before the shared object): messages.size counts it, and FetchMeta
// returns header and part offsets of the message as served.
//
// # Design choices
//
//   - UIDVALIDITY comes from a per-account counter (accounts.next_uidvalidity),
//     so a re-created name never gets an old value and no global sequence
//     is shared across shards.
//   - Keywords are a per-account name table (not per mailbox as the brief
//     suggested): COPY and MOVE keep keyword ids without remapping, and the
//     FLAGS list is one indexed read of a small table.
//   - Objects are split in a narrow hot row (objects: refcount, grace
//     clock) and a write-once metadata row (object_meta: ENVELOPE,
//     BODYSTRUCTURE, parts, header, decoded fields, tsvector with a GIN
//     index), so reference count updates never copy the metadata.
//   - messages carry no foreign key to objects: the delete check would need
//     an index on messages(object_id) that only the collector would use;
//     the reference count is the single source of truth, and the suite
//     checks it against the message rows.
//   - Parents are created as real mailboxes; DELETE of a mailbox with
//     children leaves a \Noselect placeholder, removed with its last child.
//   - MOVE within one mailbox is refused (ErrNotAllowed).
//   - An object key that was collected and is then recorded again gets a
//     new row, but its bytes are gone: the grace period must exceed the
//     longest time between CreateObject and Deliver (queue retries), or the
//     queue must hold its own reference.
package pgrepo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// Options tune the pool's session settings.
type Options struct {
	LockTimeout       time.Duration // default 5s
	StatementTimeout  time.Duration // default 30s
	IdleInTxTimeout   time.Duration // default 60s
	MaxConns          int32         // default pgxpool's
	SkipMigrations    bool
	MigrationsTimeout time.Duration // default 5m
}

// Repo is the PostgreSQL repository.
type Repo struct {
	pool *pgxpool.Pool
}

var _ repo.Repository = (*Repo)(nil)

// Open connects to url, applies the migrations (unless opts say not to) and
// returns the repository.
func Open(ctx context.Context, url string, opts Options) (*Repo, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pgrepo: parse database URL: %w", err)
	}
	ms := func(d, def time.Duration) string {
		if d == 0 {
			d = def
		}
		return fmt.Sprintf("%d", d.Milliseconds())
	}
	rp := cfg.ConnConfig.RuntimeParams
	rp["lock_timeout"] = ms(opts.LockTimeout, 5*time.Second)
	rp["statement_timeout"] = ms(opts.StatementTimeout, 30*time.Second)
	rp["idle_in_transaction_session_timeout"] = ms(opts.IdleInTxTimeout, 60*time.Second)
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgrepo: connect: %w", err)
	}
	if !opts.SkipMigrations {
		mctx, cancel := context.WithTimeout(ctx, ms2d(opts.MigrationsTimeout, 5*time.Minute))
		defer cancel()
		if _, err := Migrate(mctx, pool); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return &Repo{pool: pool}, nil
}

func ms2d(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Pool exposes the pool, for tools and tests.
func (r *Repo) Pool() *pgxpool.Pool { return r.pool }

// Close closes the pool.
func (r *Repo) Close() { r.pool.Close() }

// inTx runs fn in a READ COMMITTED transaction, retrying on deadlock and
// serialization failure (both roll back everything, so a retry is safe).
func (r *Repo) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		err = pgx.BeginFunc(ctx, r.pool, fn)
		if !retryable(err) {
			return err
		}
	}
	return err
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func isNoData(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "P0002"
}

// notFound wraps repo.ErrNotFound with what was missing.
func notFound(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{repo.ErrNotFound}, args...)...)
}

func isFKViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503"
}
