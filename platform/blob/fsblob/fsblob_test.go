package fsblob_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/platform/blob/blobtest"
	"github.com/petrel-mail/petrel/platform/blob/fsblob"
)

func TestContract(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := fsblob.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestNoEscape checks that nothing is ever written outside the root, and
// that a failed Put leaves no temporary file behind.
func TestNoEscape(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	s, err := fsblob.New(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"../x", "a/../../x", "/etc/x", "..", "a/.."} {
		if _, err := s.Put(t.Context(), key, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) succeeded", key)
		}
	}
	if _, err := s.Put(t.Context(), "a/b", iotestErrReader{}); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	ents, err := os.ReadDir(parent)
	if err != nil || len(ents) != 1 || ents[0].Name() != "root" {
		t.Fatalf("parent of root holds %v (%v), want only root", ents, err)
	}
	var files []string
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil || len(files) != 0 {
		t.Fatalf("root holds files %q (%v) after only failed Puts", files, err)
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, os.ErrClosed }
