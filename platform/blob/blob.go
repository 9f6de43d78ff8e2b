// Package blob defines Store, the interface Petrel uses to keep raw RFC 5322
// messages: immutable objects written once (by smtp while it receives DATA or
// BDAT) and read many times (whole by delivery, in byte ranges by IMAP
// partial FETCH, RFC 9051 §6.4.5), deleted only by the store's garbage
// collector after a grace period.
//
// Two implementations pass the same contract suite (package blobtest):
// s3blob (any S3 server; MinIO in tests) for clusters and fsblob (a local
// directory) for the standalone build.
//
// Contract, shared by every implementation:
//
//   - Put streams: an object of any size is written with memory bounded by
//     the backend's buffer (one part for S3), never the whole object. Put
//     reports success only once the object is durable, which is what lets
//     smtp answer 250 (ARCHITECTURE.md, "The life of a message").
//   - A Put that fails (the reader fails, the context is cancelled, the
//     backend errs) leaves no new object: the key keeps what it held before,
//     or stays missing.
//   - Objects are meant to be written once, but a Put to an existing key is
//     not an error: it replaces the object atomically. Readers see either the
//     old or the new content, never a mix; a reader already open keeps
//     reading the version it opened.
//   - Get, GetRange and Stat of a missing key return an error for which
//     errors.Is(err, ErrNotFound) holds. Delete of a missing key succeeds.
//   - GetRange clamps to the object: a range that starts at or beyond the end
//     reads as empty, the way an IMAP partial FETCH beyond the end does.
//   - List yields the keys under a prefix in ascending byte order.
//   - A key must not be the "directory" of another key: "a" and "a/b" must
//     not both exist. S3 allows it, but MinIO on a filesystem does not (it
//     refuses one of them or hides the other), so what happens is undefined.
//     Petrel's key schemes give every object a key of the same depth.
//   - Keys are checked by ValidKey before any backend sees them, so a key can
//     never name a path outside a filesystem root and means the same thing on
//     every backend.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"
)

// ErrNotFound is returned, wrapped, by Get, GetRange and Stat when no object
// has the key.
var ErrNotFound = errors.New("blob: not found")

// ErrInvalidKey is returned, wrapped, by every method given a key (or, for
// List, a prefix) that ValidKey rejects.
var ErrInvalidKey = errors.New("blob: invalid key")

// Info describes a stored object.
type Info struct {
	Key  string
	Size int64
	// ModTime is when the object was written. Stat, Get and List set it;
	// Put may leave it zero (an S3 PUT response does not carry it).
	ModTime time.Time
	// ETag identifies this version of the object: it changes when the key is
	// overwritten. It is opaque (S3's ETag; for files a digest of size and
	// modification time) and is not a content hash: callers that need one
	// compute it while they stream.
	ETag string
}

// Store keeps immutable objects by key. Implementations are safe for
// concurrent use.
type Store interface {
	// Put stores the object read from r until io.EOF. Its length is not
	// known in advance; it is streamed, never held whole in memory. The
	// object is durable when Put returns nil.
	Put(ctx context.Context, key string, r io.Reader) (Info, error)
	// Get opens the whole object. The caller must Close the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, Info, error)
	// GetRange opens length bytes of the object starting at offset; a
	// negative length reads to the end. The range is clamped to the object.
	GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Stat describes the object without reading it.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the object; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List yields every object whose key starts with prefix, in ascending
	// key order. An error ends the sequence. The prefix need not end at a
	// "/"; it must be "" or a prefix that ValidPrefix accepts.
	List(ctx context.Context, prefix string) iter.Seq2[Info, error]
}

// Key limits. MaxKeyLen matches S3's 1024-byte key limit; MaxSegmentLen
// leaves room under the usual 255-byte file name limit for the suffix fsblob
// adds to directory names.
const (
	MaxKeyLen     = 1024
	MaxSegmentLen = 200
)

// ValidKey reports whether key is acceptable, and why not. A key is one or
// more "/"-separated segments; each segment is 1 to MaxSegmentLen bytes of
// ASCII letters, digits and "-", "_", ".", "=", "+", and does not start with
// "." (so "." and ".." are impossible, and so are the hidden names fsblob
// uses for temporary files). The whole key is at most MaxKeyLen bytes. The
// small alphabet means a key needs no escaping in a URL or a file name and
// sorts the same everywhere.
func ValidKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidKey, MaxKeyLen)
	}
	start := 0
	for i := 0; i <= len(key); i++ {
		if i < len(key) && key[i] != '/' {
			if !keyByte(key[i]) {
				return fmt.Errorf("%w: byte 0x%02x at offset %d is not allowed", ErrInvalidKey, key[i], i)
			}
			continue
		}
		seg := key[start:i]
		switch {
		case seg == "":
			return fmt.Errorf("%w: empty segment at offset %d", ErrInvalidKey, start)
		case seg[0] == '.':
			return fmt.Errorf("%w: segment at offset %d starts with '.'", ErrInvalidKey, start)
		case len(seg) > MaxSegmentLen:
			return fmt.Errorf("%w: segment at offset %d longer than %d bytes", ErrInvalidKey, start, MaxSegmentLen)
		}
		start = i + 1
	}
	return nil
}

// ValidPrefix reports whether prefix can be passed to List: "" (everything),
// or a string that is a valid key, or a valid key followed by "/". A prefix
// may end inside a segment ("inbox/2026-1" lists "inbox/2026-11/x").
func ValidPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	k := prefix
	if k[len(k)-1] == '/' {
		k = k[:len(k)-1]
	}
	if err := ValidKey(k); err != nil {
		return fmt.Errorf("prefix %q: %w", prefix, err)
	}
	return nil
}

func keyByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '-', c == '_', c == '.', c == '=', c == '+':
		return true
	}
	return false
}

// Checker is an optional ability of a Store: Check reports whether the
// backend is reachable and usable, for readiness probes.
type Checker interface {
	Check(ctx context.Context) error
}
