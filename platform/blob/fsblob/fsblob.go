// Package fsblob is the blob.Store of the standalone build: objects are files
// under a root directory on the local filesystem.
//
// Layout: a key "a/b/c" is the file root/a@/b@/c. Every directory gets an "@"
// suffix, a byte that blob.ValidKey never allows, so the key "a" (file a) and
// the key "a/b" (directory a@) can both exist, as they can in S3. Temporary
// files start with ".", which no key segment may, so they never clash with an
// object and List skips them. Directories are created on demand and left in
// place when their last object is deleted: removing them would race with a
// concurrent Put into the same directory.
//
// Durability: Put writes a temporary file in the object's directory, fsyncs
// it, renames it over the final name (atomic on POSIX filesystems) and fsyncs
// the directory, and fsyncs the parent of every directory it had to create.
// When Put returns nil the object survives a crash or power loss, which is
// what smtp's 250 reply promises. A crash in the middle of a Put can leave a
// ".tmp-*" file behind; it is never visible as an object.
package fsblob

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/petrel-mail/petrel/platform/blob"
)

const dirSuffix = "@"

// Store is a blob.Store on a local directory.
type Store struct {
	root string
}

var (
	_ blob.Store   = (*Store)(nil)
	_ blob.Checker = (*Store)(nil)
)

// New returns a Store rooted at dir, creating dir if needed.
func New(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("fsblob: empty root directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("fsblob: root %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("fsblob: create root: %w", err)
	}
	s := &Store{root: abs}
	if err := s.Check(context.Background()); err != nil {
		return nil, err
	}
	return s, nil
}

// Check reports whether the root is still a directory.
func (s *Store) Check(ctx context.Context) error {
	fi, err := os.Stat(s.root)
	if err != nil {
		return fmt.Errorf("fsblob: root: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("fsblob: root %s is not a directory", s.root)
	}
	return nil
}

// path returns the directory and the file name of key, which must be valid.
func (s *Store) path(key string) (dir, file string) {
	segs := strings.Split(key, "/")
	parts := make([]string, 0, len(segs)+1)
	parts = append(parts, s.root)
	for _, d := range segs[:len(segs)-1] {
		parts = append(parts, d+dirSuffix)
	}
	dir = filepath.Join(parts...)
	return dir, filepath.Join(dir, segs[len(segs)-1])
}

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (info blob.Info, err error) {
	if err := blob.ValidKey(key); err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: put %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: put %q: %w", key, err)
	}
	dir, name := s.path(key)
	if err := s.mkdirs(key); err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: put %q: %w", key, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: put %q: %w", key, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	// io.Copy through a plain reader wrapper: a fixed 32 KiB buffer, so
	// memory does not grow with the object.
	if _, err = io.Copy(f, ctxReader{ctx: ctx, r: r}); err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: put %q: write: %w", key, err)
	}
	if err = f.Sync(); err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: put %q: fsync: %w", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: put %q: %w", key, err)
	}
	if err = f.Close(); err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: put %q: close: %w", key, err)
	}
	// Last chance to honour a cancellation: after the rename the object
	// exists and the caller would be told it does not.
	if err = ctx.Err(); err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: put %q: %w", key, err)
	}
	if err = os.Rename(tmp, name); err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: put %q: rename: %w", key, err)
	}
	if err := syncDir(dir); err != nil {
		// The object is in place but its name may not survive a crash;
		// failing lets the caller retry rather than promise durability.
		return blob.Info{}, fmt.Errorf("fsblob: put %q: %w", key, err)
	}
	return infoOf(key, fi), nil
}

// mkdirs creates the directories of key one level at a time, so that it
// knows which ones are new and fsyncs their parents: a new directory's name
// is only durable once its parent is synced.
func (s *Store) mkdirs(key string) error {
	segs := strings.Split(key, "/")
	p := s.root
	for _, d := range segs[:len(segs)-1] {
		parent := p
		p = filepath.Join(p, d+dirSuffix)
		err := os.Mkdir(p, 0o750)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := syncDir(parent); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for fsync: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory: %w", err)
	}
	return nil
}

// ctxReader stops a copy when the context is cancelled: the reader is often
// a network connection that would otherwise keep the Put going.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func infoOf(key string, fi fs.FileInfo) blob.Info {
	return blob.Info{
		Key:     key,
		Size:    fi.Size(),
		ModTime: fi.ModTime(),
		// Size and nanosecond mtime change on every rewrite in practice;
		// that is all ETag promises.
		ETag: fmt.Sprintf("%x-%x", fi.ModTime().UnixNano(), fi.Size()),
	}
}

func (s *Store) open(ctx context.Context, op, key string) (*os.File, fs.FileInfo, error) {
	if err := blob.ValidKey(key); err != nil {
		return nil, nil, fmt.Errorf("fsblob: %s %q: %w", op, key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("fsblob: %s %q: %w", op, key, err)
	}
	_, name := s.path(key)
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("fsblob: %s %q: %w", op, key, blob.ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("fsblob: %s %q: %w", op, key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("fsblob: %s %q: %w", op, key, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, nil, fmt.Errorf("fsblob: %s %q: not a regular file", op, key)
	}
	return f, fi, nil
}

// Get implements blob.Store. The reader is the open file: a later overwrite
// or Delete does not change what it reads.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, blob.Info, error) {
	f, fi, err := s.open(ctx, "get", key)
	if err != nil {
		return nil, blob.Info{}, err
	}
	return f, infoOf(key, fi), nil
}

// GetRange implements blob.Store.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, fmt.Errorf("fsblob: get range %q: negative offset %d", key, offset)
	}
	f, fi, err := s.open(ctx, "get range", key)
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	offset = min(offset, size)
	if length < 0 || length > size-offset {
		length = size - offset
	}
	return sectionReadCloser{io.NewSectionReader(f, offset, length), f}, nil
}

type sectionReadCloser struct {
	*io.SectionReader
	io.Closer
}

// Stat implements blob.Store.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := blob.ValidKey(key); err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: stat %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: stat %q: %w", key, err)
	}
	_, name := s.path(key)
	fi, err := os.Stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return blob.Info{}, fmt.Errorf("fsblob: stat %q: %w", key, blob.ErrNotFound)
	}
	if err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: stat %q: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		return blob.Info{}, fmt.Errorf("fsblob: stat %q: not a regular file", key)
	}
	return infoOf(key, fi), nil
}

// Delete implements blob.Store. The directory is fsynced so that a deleted
// object does not come back after a crash.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidKey(key); err != nil {
		return fmt.Errorf("fsblob: delete %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fsblob: delete %q: %w", key, err)
	}
	dir, name := s.path(key)
	err := os.Remove(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fsblob: delete %q: %w", key, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("fsblob: delete %q: %w", key, err)
	}
	return nil
}

// List implements blob.Store. It walks only the directories that can hold
// keys with the prefix, reading one directory at a time, so memory grows with
// the depth and width of the tree, not with the number of objects.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[blob.Info, error] {
	return func(yield func(blob.Info, error) bool) {
		if err := blob.ValidPrefix(prefix); err != nil {
			yield(blob.Info{}, fmt.Errorf("fsblob: list: %w", err))
			return
		}
		s.walk(ctx, s.root, "", prefix, yield)
	}
}

type entry struct {
	order string // the key bytes this entry covers: "seg" or "seg/"
	name  string
	dir   bool
}

// walk yields the objects in dir, whose keys start with keyPrefix, and
// recurses into subdirectories. Sorting each directory by "seg" for files and
// "seg/" for directories yields keys in global byte order: every key below a
// directory starts with "seg/", so it sorts exactly where "seg/" does among
// its siblings. It returns false when the caller stopped or an error ended
// the walk.
func (s *Store) walk(ctx context.Context, dir, keyPrefix, prefix string, yield func(blob.Info, error) bool) bool {
	if err := ctx.Err(); err != nil {
		yield(blob.Info{}, fmt.Errorf("fsblob: list: %w", err))
		return false
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return true // removed while we walked: nothing to list
		}
		yield(blob.Info{}, fmt.Errorf("fsblob: list: %w", err))
		return false
	}
	entries := make([]entry, 0, len(des))
	for _, de := range des {
		n := de.Name()
		if strings.HasPrefix(n, ".") {
			continue // temporary file
		}
		if seg, ok := strings.CutSuffix(n, dirSuffix); ok && de.IsDir() {
			entries = append(entries, entry{order: seg + "/", name: n, dir: true})
		} else if de.Type().IsRegular() {
			entries = append(entries, entry{order: n, name: n})
		}
	}
	slices.SortFunc(entries, func(a, b entry) int { return cmp.Compare(a.order, b.order) })
	for _, e := range entries {
		k := keyPrefix + e.order
		if e.dir {
			if strings.HasPrefix(k, prefix) || strings.HasPrefix(prefix, k) {
				if !s.walk(ctx, filepath.Join(dir, e.name), k, prefix, yield) {
					return false
				}
			}
			continue
		}
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, e.name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted while we walked
		}
		if err != nil {
			yield(blob.Info{}, fmt.Errorf("fsblob: list: %w", err))
			return false
		}
		if !yield(infoOf(k, fi), nil) {
			return false
		}
	}
	return true
}
