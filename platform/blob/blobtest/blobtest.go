// Package blobtest is the conformance suite for blob.Store: every
// implementation runs Run against its real engine (MinIO for s3blob, a
// temporary directory for fsblob), so that they all keep the contract written
// in package blob.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mail/petrel/platform/blob"
)

// Run runs the whole suite. newStore is called once per test; the stores it
// returns may share one bucket or directory, because every test keeps its
// objects under a key prefix of its own. The tests do not run in parallel:
// the memory test measures the process heap.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store, ns string)
	}{
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"GetRange", testGetRange},
		{"Stat", testStat},
		{"Delete", testDelete},
		{"NotFound", testNotFound},
		{"List", testList},
		{"InvalidKeys", testInvalidKeys},
		{"LongKey", testLongKey},
		{"FailingReader", testFailingReader},
		{"ContextCancelled", testContextCancelled},
		{"ConcurrentPuts", testConcurrentPuts},
		{"Multipart", testMultipart},
		{"LargeObjectBoundedMemory", testLargeObjectBoundedMemory},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t), namespace(t))
		})
	}
}

// namespaces counts the namespaces handed out in this process.
var namespaces atomic.Int64

// namespace turns the test's name into a key prefix unique to it and to
// this run of it (-count=2 runs it twice against the same bucket).
func namespace(t *testing.T) string {
	var b strings.Builder
	fmt.Fprintf(&b, "blobtest-%d-", namespaces.Add(1))
	for _, c := range []byte(t.Name()) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(seedOf(seed)).Read(b)
	return b
}

func seedOf(n uint64) [32]byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(n >> (8 * i))
	}
	return s
}

func put(t *testing.T, s blob.Store, key string, data []byte) blob.Info {
	t.Helper()
	info, err := s.Put(context.Background(), key, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	if info.Key != key || info.Size != int64(len(data)) {
		t.Fatalf("Put(%q) = key %q size %d, want size %d", key, info.Key, info.Size, len(data))
	}
	return info
}

func get(t *testing.T, s blob.Store, key string) ([]byte, blob.Info) {
	t.Helper()
	rc, info, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", key, err)
	}
	return data, info
}

func getRange(t *testing.T, s blob.Store, key string, off, n int64) []byte {
	t.Helper()
	rc, err := s.GetRange(context.Background(), key, off, n)
	if err != nil {
		t.Fatalf("GetRange(%q, %d, %d): %v", key, off, n, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("GetRange(%q, %d, %d): read: %v", key, off, n, err)
	}
	return data
}

func wantNotFound(t *testing.T, s blob.Store, key string) {
	t.Helper()
	if _, err := s.Stat(context.Background(), key); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat(%q) = %v, want ErrNotFound", key, err)
	}
}

func listKeys(t *testing.T, s blob.Store, prefix string) []string {
	t.Helper()
	keys := []string{}
	for info, err := range s.List(context.Background(), prefix) {
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		keys = append(keys, info.Key)
	}
	return keys
}

func testRoundTrip(t *testing.T, s blob.Store, ns string) {
	binary := make([]byte, 512)
	for i := range binary {
		binary[i] = byte(i) // every byte value, NUL and CR LF included
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"small", []byte("From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n")},
		{"binary", binary},
		{"1MiB-random", randomBytes(1, 1<<20)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key := ns + "/" + c.name
			pinfo := put(t, s, key, c.data)
			if pinfo.ETag == "" {
				t.Errorf("Put(%q): empty ETag", key)
			}
			got, ginfo := get(t, s, key)
			if !bytes.Equal(got, c.data) {
				t.Fatalf("Get(%q): got %d bytes, differ from the %d put", key, len(got), len(c.data))
			}
			if ginfo.Key != key || ginfo.Size != int64(len(c.data)) {
				t.Errorf("Get(%q) info = %+v, want size %d", key, ginfo, len(c.data))
			}
			if ginfo.ETag != pinfo.ETag {
				t.Errorf("Get(%q) ETag %q, Put said %q", key, ginfo.ETag, pinfo.ETag)
			}
		})
	}
}

// testOverwrite pins the overwrite semantics: a second Put to a key replaces
// the object entirely (no trace of the longer first version) and changes its
// ETag; a reader opened before the overwrite still reads the old version.
func testOverwrite(t *testing.T, s blob.Store, ns string) {
	key := ns + "/msg"
	v1 := bytes.Repeat([]byte("first version, the longer one\r\n"), 1000)
	v2 := []byte("second\r\n")
	i1 := put(t, s, key, v1)
	old, _, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	i2 := put(t, s, key, v2)
	if i1.ETag == i2.ETag {
		t.Errorf("ETag %q unchanged by overwrite", i1.ETag)
	}
	got, info := get(t, s, key)
	if !bytes.Equal(got, v2) || info.Size != int64(len(v2)) {
		t.Fatalf("after overwrite Get = %q (size %d), want %q", got, info.Size, v2)
	}
	st, err := s.Stat(context.Background(), key)
	if err != nil || st.Size != int64(len(v2)) || st.ETag != i2.ETag {
		t.Fatalf("after overwrite Stat = %+v, %v; want size %d ETag %q", st, err, len(v2), i2.ETag)
	}
	if got := listKeys(t, s, ns+"/"); !slices.Equal(got, []string{key}) {
		t.Fatalf("List after overwrite = %q, want just %q", got, key)
	}
	// The S3 response body is already streaming from the old version; on
	// disk the open file keeps the old inode. Read a prefix only: S3 buffers
	// a whole small response, so this is the guarantee both can give.
	head := make([]byte, 5)
	if _, err := io.ReadFull(old, head); err != nil || string(head) != "first" {
		t.Fatalf("reader opened before overwrite read %q, %v; want %q", head, err, "first")
	}
}

func testGetRange(t *testing.T, s blob.Store, ns string) {
	key := ns + "/obj"
	data := randomBytes(2, 1000)
	put(t, s, key, data)
	cases := []struct {
		off, n int64
		want   []byte
	}{
		{0, 10, data[:10]},
		{0, -1, data},
		{0, 1000, data},
		{100, 50, data[100:150]},
		{999, 1, data[999:]},
		{990, -1, data[990:]},
		{990, 100, data[990:]}, // clamped at the end
		{500, 0, nil},
		{1000, 10, nil},    // starts at the end
		{1000, -1, nil},    // starts at the end, open-ended
		{5000, 10, nil},    // beyond the end
		{5000, -1, nil},    // beyond the end, open-ended
		{0, 1 << 40, data}, // huge length
	}
	for _, c := range cases {
		got := getRange(t, s, key, c.off, c.n)
		if !bytes.Equal(got, c.want) {
			t.Errorf("GetRange(%d, %d): got %d bytes, want %d", c.off, c.n, len(got), len(c.want))
		}
	}
	if _, err := s.GetRange(context.Background(), key, -1, 10); err == nil {
		t.Error("GetRange with a negative offset succeeded")
	}

	empty := ns + "/empty"
	put(t, s, empty, nil)
	for _, c := range [][2]int64{{0, -1}, {0, 10}, {0, 0}, {3, -1}} {
		if got := getRange(t, s, empty, c[0], c[1]); len(got) != 0 {
			t.Errorf("GetRange(empty object, %d, %d) = %d bytes", c[0], c[1], len(got))
		}
	}
}

func testStat(t *testing.T, s blob.Store, ns string) {
	key := ns + "/a/b/obj"
	data := randomBytes(3, 4321)
	pinfo := put(t, s, key, data)
	info, err := s.Stat(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != key || info.Size != int64(len(data)) || info.ETag != pinfo.ETag || info.ModTime.IsZero() {
		t.Fatalf("Stat = %+v, want key %q size %d ETag %q and a ModTime", info, key, len(data), pinfo.ETag)
	}
}

func testDelete(t *testing.T, s blob.Store, ns string) {
	ctx := context.Background()
	key := ns + "/dir/obj"
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete of a key never written: %v", err)
	}
	put(t, s, key, []byte("x"))
	put(t, s, ns+"/dir/other", []byte("y"))
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, s, key)
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if got := listKeys(t, s, ns+"/"); !slices.Equal(got, []string{ns + "/dir/other"}) {
		t.Fatalf("List after Delete = %q", got)
	}
	// The key can be written again.
	put(t, s, key, []byte("again"))
	if got, _ := get(t, s, key); string(got) != "again" {
		t.Fatalf("Get after re-Put = %q", got)
	}
}

func testNotFound(t *testing.T, s blob.Store, ns string) {
	ctx := context.Background()
	put(t, s, ns+"/present", []byte("x"))
	for _, key := range []string{ns + "/missing", ns + "/present/below", ns + "/nodir/missing"} {
		if _, _, err := s.Get(ctx, key); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", key, err)
		}
		for _, n := range []int64{-1, 0, 10} {
			if _, err := s.GetRange(ctx, key, 0, n); !errors.Is(err, blob.ErrNotFound) {
				t.Errorf("GetRange(%q, 0, %d) = %v, want ErrNotFound", key, n, err)
			}
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Stat(%q) = %v, want ErrNotFound", key, err)
		}
	}
}

func testList(t *testing.T, s blob.Store, ns string) {
	p := ns + "/l/"
	// Written out of order. "a-c" and "a.x" sort before "a/b" because '-'
	// and '.' < '/', although a directory walk meets "a/" first. No key is also the "directory" of another
	// (see blob.Store): MinIO refuses or hides such pairs.
	keys := []string{"b/c/d", "ab", "a/b", "a-c", "a/c/d", "Z", "a.x", "b/c/e"}
	sizes := map[string]int{}
	for i, k := range keys {
		sizes[p+k] = i * 7
		put(t, s, p+k, randomBytes(uint64(i), i*7))
	}
	put(t, s, ns+"/l-outside", []byte("not under the prefix"))

	want := func(ks ...string) []string {
		out := []string{}
		for _, k := range ks {
			out = append(out, p+k)
		}
		return out
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{p, want("Z", "a-c", "a.x", "a/b", "a/c/d", "ab", "b/c/d", "b/c/e")},
		{p + "a", want("a-c", "a.x", "a/b", "a/c/d", "ab")},
		{p + "a/", want("a/b", "a/c/d")},
		{p + "a/b", want("a/b")},
		{p + "a/c", want("a/c/d")},
		{p + "b/c/", want("b/c/d", "b/c/e")},
		{p + "b/c/e", want("b/c/e")},
		{p + "nothing", want()},
		{p + "b/x/", want()},
	}
	for _, c := range cases {
		if got := listKeys(t, s, c.prefix); !slices.Equal(got, c.want) {
			t.Errorf("List(%q) =\n%q\nwant\n%q", c.prefix, got, c.want)
		}
	}
	for info, err := range s.List(context.Background(), p) {
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != int64(sizes[info.Key]) || info.ModTime.IsZero() {
			t.Errorf("List info %+v, want size %d and a ModTime", info, sizes[info.Key])
		}
	}
	// Stopping early is allowed and must not hang or leak.
	n := 0
	for _, err := range s.List(context.Background(), p) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 2 {
			break
		}
	}
	// The whole store lists in order too (other tests' keys included).
	all := listKeys(t, s, "")
	if !slices.IsSorted(all) {
		t.Errorf("List(\"\") is not sorted")
	}
	for _, k := range want("a/b", "b/c/e") {
		if !slices.Contains(all, k) {
			t.Errorf("List(\"\") lacks %q", k)
		}
	}
	for _, bad := range []string{"/", "/x", "a//", "..", "x/../", "x y"} {
		var gotErr error
		for _, err := range s.List(context.Background(), bad) {
			gotErr = err
		}
		if !errors.Is(gotErr, blob.ErrInvalidKey) {
			t.Errorf("List(%q) ended with %v, want ErrInvalidKey", bad, gotErr)
		}
	}
}

func testInvalidKeys(t *testing.T, s blob.Store, ns string) {
	ctx := context.Background()
	bad := []string{
		"", "/", "/abs", "a/", "a//b", ".", "..", "../escape", "a/../../b", "a/./b",
		".hidden", "a/.tmp-1", `a\b`, "a b", "a\x00b", "a\nb", "caf\u00e9", "a:b", "a?b", "a%2e",
		strings.Repeat("k", blob.MaxSegmentLen+1),
		strings.Repeat("k/", blob.MaxKeyLen/2) + "k",
	}
	for _, key := range bad {
		if err := blob.ValidKey(key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("ValidKey(%q) = %v", key, err)
		}
		if _, err := s.Put(ctx, key, strings.NewReader("x")); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, _, err := s.Get(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Get(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.GetRange(ctx, key, 0, 1); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("GetRange(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
	// None of them wrote anything anywhere in the store.
	for info, err := range s.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(info.Key, "blobtest-") {
			t.Errorf("unexpected object %q after invalid Puts", info.Key)
		}
	}
}

// testLongKey checks the longest keys and segments are accepted.
func testLongKey(t *testing.T, s blob.Store, ns string) {
	seg := strings.Repeat("s", blob.MaxSegmentLen)
	put(t, s, ns+"/"+seg, []byte("long segment"))
	// Another first segment: the object above must not be a "directory".
	key := ns + "/" + strings.Repeat("t", blob.MaxSegmentLen)
	for len(key)+1+blob.MaxSegmentLen <= blob.MaxKeyLen {
		key += "/" + seg
	}
	key += "/" + strings.Repeat("e", blob.MaxKeyLen-len(key)-1)
	if len(key) != blob.MaxKeyLen {
		t.Fatalf("built a %d-byte key", len(key))
	}
	put(t, s, key, []byte("longest key"))
	if got, _ := get(t, s, key); string(got) != "longest key" {
		t.Fatalf("Get(longest key) = %q", got)
	}
	if got := listKeys(t, s, ns+"/"); !slices.Equal(got, []string{ns + "/" + seg, key}) {
		t.Fatalf("List = %d keys %q, want the two long ones", len(got), got)
	}
	for _, k := range []string{key, ns + "/" + seg} {
		if err := s.Delete(context.Background(), k); err != nil {
			t.Fatal(err)
		}
		wantNotFound(t, s, k)
	}
}

var errBoom = errors.New("blobtest: reader failed")

// failingReader yields n bytes of data and then fails.
type failingReader struct {
	r io.Reader
	n int64
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errBoom
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= int64(n)
	return n, err
}

func newFailingReader(seed uint64, n int64) io.Reader {
	return &failingReader{r: rand.NewChaCha8(seedOf(seed)), n: n}
}

func testFailingReader(t *testing.T, s blob.Store, ns string) {
	ctx := context.Background()
	// 100 KiB fails inside the first buffer; 20 MiB fails after S3 parts were
	// uploaded (the suite's S3 part size is at most 8 MiB).
	for _, n := range []int64{0, 100 << 10, 20 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			fresh := fmt.Sprintf("%s/fresh-%d", ns, n)
			if _, err := s.Put(ctx, fresh, newFailingReader(1, n)); !errors.Is(err, errBoom) {
				t.Fatalf("Put from a failing reader = %v, want the reader's error", err)
			}
			wantNotFound(t, s, fresh)

			kept := fmt.Sprintf("%s/kept-%d", ns, n)
			put(t, s, kept, []byte("original"))
			if _, err := s.Put(ctx, kept, newFailingReader(2, n)); !errors.Is(err, errBoom) {
				t.Fatalf("overwriting Put from a failing reader = %v, want the reader's error", err)
			}
			if got, _ := get(t, s, kept); string(got) != "original" {
				t.Fatalf("failed overwrite left %d bytes, want the original", len(got))
			}
			if got := listKeys(t, s, ns+"/"); len(got) != 1+slices.Index([]int64{0, 100 << 10, 20 << 20}, n) {
				t.Fatalf("List after failed Puts = %q: a failed Put left something", got)
			}
		})
	}
}

// cancellingReader cancels its context after after bytes, then goes on
// supplying data up to total bytes, as a client that keeps sending would.
type cancellingReader struct {
	r      io.Reader
	after  int64
	left   int64
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), c.left)]
	n, err := c.r.Read(p)
	c.left -= int64(n)
	c.after -= int64(n)
	if c.after <= 0 {
		c.cancel()
	}
	return n, err
}

func testContextCancelled(t *testing.T, s blob.Store, ns string) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	key := ns + "/before"
	if _, err := s.Put(cancelled, key, strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context = %v, want context.Canceled", err)
	}
	wantNotFound(t, s, key)

	put(t, s, ns+"/present", []byte("x"))
	if rc, _, err := s.Get(cancelled, ns+"/present"); err == nil {
		rc.Close()
		t.Error("Get with a cancelled context succeeded")
	}
	if _, err := s.Stat(cancelled, ns+"/present"); err == nil {
		t.Error("Stat with a cancelled context succeeded")
	}
	var listErr error
	for _, err := range s.List(cancelled, ns+"/") {
		listErr = err
	}
	if listErr == nil {
		t.Error("List with a cancelled context ended without an error")
	}

	// Cancelled while the body is still arriving: small (one buffer) and
	// large (several S3 parts already uploaded).
	for _, size := range []int64{64 << 10, 20 << 20} {
		ctx, cancel := context.WithCancel(context.Background())
		key := fmt.Sprintf("%s/during-%d", ns, size)
		r := &cancellingReader{r: rand.NewChaCha8(seedOf(3)), after: size / 2, left: size, cancel: cancel}
		_, err := s.Put(ctx, key, r)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Put cancelled midway (%d bytes) = %v, want context.Canceled", size, err)
		}
		wantNotFound(t, s, key)
	}
}

func testConcurrentPuts(t *testing.T, s blob.Store, ns string) {
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			key := fmt.Sprintf("%s/k%02d", ns, i)
			_, errs[i] = s.Put(context.Background(), key, bytes.NewReader(randomBytes(uint64(i), 64<<10+i)))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
	}
	keys := listKeys(t, s, ns+"/")
	if len(keys) != n {
		t.Fatalf("List after %d concurrent Puts = %d keys", n, len(keys))
	}
	for i := range n {
		got, _ := get(t, s, keys[i])
		if !bytes.Equal(got, randomBytes(uint64(i), 64<<10+i)) {
			t.Fatalf("object %q has the wrong content", keys[i])
		}
	}
}

// testMultipart round-trips objects of sizes around the usual S3 part sizes
// and reads ranges across part boundaries.
func testMultipart(t *testing.T, s blob.Store, ns string) {
	data := randomBytes(4, 16<<20+100)
	for _, n := range []int{5 << 20, 8 << 20, 8<<20 + 1, 16 << 20, len(data)} {
		key := fmt.Sprintf("%s/o%d", ns, n)
		put(t, s, key, data[:n])
		if got, info := get(t, s, key); !bytes.Equal(got, data[:n]) || info.Size != int64(n) {
			t.Fatalf("Get(%d-byte object): %d bytes, not equal", n, len(got))
		}
	}
	key := fmt.Sprintf("%s/o%d", ns, len(data))
	for _, b := range []int64{5 << 20, 8 << 20, 16 << 20} {
		if got := getRange(t, s, key, b-10, 20); !bytes.Equal(got, data[b-10:b+10]) {
			t.Errorf("GetRange across %d: wrong bytes", b)
		}
	}
}

// Large object limits. maxHeapGrowth is the budget of the bounded-memory
// test: one S3 part (8 MiB by default) plus its transient growth from 4 MiB
// (12 MiB at the peak of a doubling), HTTP and TLS buffers, and the GC slack
// that heapSlackGCPercent leaves. A Store that held the object would need
// over 100 MiB. The race detector keeps its shadow memory outside the Go
// heap, so it does not count here, but under -race sync.Pool drops items at
// random and more short-lived garbage is made; the low GC percent keeps that
// garbage collected promptly, so the bound holds with -race too.
const (
	largeSize          = 100 << 20
	maxHeapGrowth      = 32 << 20
	heapSlackGCPercent = 20
)

func testLargeObjectBoundedMemory(t *testing.T, s blob.Store, ns string) {
	key := ns + "/large"
	gen := io.LimitReader(rand.NewChaCha8(seedOf(5)), largeSize) // never materialized
	putHash := sha256.New()
	var info blob.Info
	growth := measureHeap(t, func() {
		var err error
		info, err = s.Put(context.Background(), key, io.TeeReader(gen, putHash))
		if err != nil {
			t.Fatalf("Put(100 MiB): %v", err)
		}
	})
	t.Logf("Put of %d MiB: peak heap growth %.1f MiB", largeSize>>20, float64(growth)/(1<<20))
	if info.Size != largeSize {
		t.Fatalf("Put size %d, want %d", info.Size, largeSize)
	}
	if growth > maxHeapGrowth {
		t.Errorf("Put grew the heap by %d bytes, more than %d: it is not streaming", growth, maxHeapGrowth)
	}

	getHash := sha256.New()
	var n int64
	growth = measureHeap(t, func() {
		rc, _, err := s.Get(context.Background(), key)
		if err != nil {
			t.Fatalf("Get(100 MiB): %v", err)
		}
		defer rc.Close()
		if n, err = io.Copy(getHash, rc); err != nil {
			t.Fatalf("Get(100 MiB): read: %v", err)
		}
	})
	t.Logf("Get of %d MiB: peak heap growth %.1f MiB", largeSize>>20, float64(growth)/(1<<20))
	if n != largeSize || !bytes.Equal(getHash.Sum(nil), putHash.Sum(nil)) {
		t.Fatalf("Get returned %d bytes with a different SHA-256", n)
	}
	if growth > maxHeapGrowth {
		t.Errorf("Get grew the heap by %d bytes, more than %d: it is not streaming", growth, maxHeapGrowth)
	}
	if err := s.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
}

// measureHeap runs fn and returns the peak of the live heap objects above
// the level before fn, sampled continuously by a goroutine. It is a memory
// bound, not a timing one: a missed sample can only lower the peak, and the
// low GC percent keeps HeapAlloc close to what is really retained.
func measureHeap(t *testing.T, fn func()) uint64 {
	t.Helper()
	old := debug.SetGCPercent(heapSlackGCPercent)
	defer debug.SetGCPercent(old)
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	runtime.GC()
	base := read()
	done := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		// A millisecond between samples is far shorter than the time a
		// part buffer lives, and leaves the CPU to the Put being measured.
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var p uint64
		for {
			p = max(p, read())
			select {
			case <-done:
				peak <- max(p, read())
				return
			case <-tick.C:
			}
		}
	}()
	func() {
		defer close(done)
		fn()
	}()
	p := <-peak
	if p < base {
		return 0
	}
	return p - base
}
