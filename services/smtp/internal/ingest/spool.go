package ingest

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// spool holds a message between receiving it and storing it, when
// something (sender authentication) must read all of it before the first
// byte of the object can be written. It keeps up to memMax bytes in memory
// and moves to a temporary file beyond, so memory per session is bounded
// whatever the message size.
type spool struct {
	memMax int
	dir    string
	buf    bytes.Buffer
	file   *os.File
	size   int64
}

func newSpool(memMax int, dir string) *spool { return &spool{memMax: memMax, dir: dir} }

// ReadFrom copies r into the spool.
func (s *spool) ReadFrom(r io.Reader) (int64, error) {
	chunk := make([]byte, 32*1024)
	var total int64
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			if werr := s.write(chunk[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (s *spool) write(p []byte) error {
	s.size += int64(len(p))
	if s.file == nil && s.buf.Len()+len(p) <= s.memMax {
		s.buf.Write(p)
		return nil
	}
	if s.file == nil {
		f, err := os.CreateTemp(s.dir, "petrel-smtp-spool-*")
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		// Unlinked at once: the file disappears with the process whatever
		// happens, and nobody else can open it.
		_ = os.Remove(f.Name())
		s.file = f
		if _, err := f.Write(s.buf.Bytes()); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.buf = bytes.Buffer{}
	}
	if _, err := s.file.Write(p); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// Reader returns a new reader over the whole content; each call starts
// from the beginning.
func (s *spool) Reader() io.Reader {
	if s.file == nil {
		return bytes.NewReader(s.buf.Bytes())
	}
	return io.NewSectionReader(s.file, 0, s.size)
}

// Close releases the temporary file, if any.
func (s *spool) Close() error {
	if s.file != nil {
		return s.file.Close()
	}
	return nil
}
