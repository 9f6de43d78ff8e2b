// Package tlsutil holds Petrel's server-side TLS setup: a certificate that
// reloads itself when its files change, a self-signed certificate for
// development, and a tls.Config with sane defaults. TLS itself is RFC 8446
// (1.3) and RFC 5246 (1.2); the certificate profile is RFC 5280, with host
// names and addresses in the subjectAltName as RFC 6125 (and RFC 9525)
// requires for service identity checks.
//
// Reloading: operators rotate certificates by replacing files (cert-manager,
// Kubernetes Secret volumes, certbot hooks). Kubernetes updates a mounted
// Secret by pointing the "..data" symlink at a new directory, so the watched
// path itself never sees an event; the reloader therefore watches the
// directories containing the files, re-reads both files on any event there,
// and swaps the certificate in only when their content changed and forms a
// valid pair. A slow mtime poll covers file systems where inotify does not
// work (network mounts, some container runtimes) and watches lost when a
// directory is recreated. New handshakes get the new certificate through
// tls.Config.GetCertificate; established connections are unaffected.
package tlsutil

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Defaults for zero ReloaderOptions fields.
const (
	DefaultPollInterval = time.Minute
	DefaultSettleDelay  = 100 * time.Millisecond
)

// ReloaderOptions tune a CertReloader.
type ReloaderOptions struct {
	// PollInterval is how often the files' metadata is checked when no
	// file-system event arrives (DefaultPollInterval if zero).
	PollInterval time.Duration
	// SettleDelay coalesces a burst of events (a tool writing the
	// certificate, then the key) into one reload (DefaultSettleDelay if
	// zero).
	SettleDelay time.Duration
	// OnReload, if set, is called from the reloader's goroutine after each
	// attempt to load changed files: with the new leaf certificate on
	// success, or with an error when the files did not form a valid pair
	// (the previous certificate stays in use) or the watcher failed. It
	// should not block.
	OnReload func(leaf *x509.Certificate, err error)

	// noWatch turns the file-system watcher off, so tests can prove the
	// poll fallback alone picks up a change.
	noWatch bool
}

// CertReloader serves a certificate and key pair from files, reloading them
// when they change.
type CertReloader struct {
	certFile, keyFile string
	opts              ReloaderOptions

	current atomic.Pointer[tls.Certificate]

	// mu serialises loads so a forced Reload and the watcher never
	// interleave; it guards the fields below.
	mu                sync.Mutex
	seenCert, seenKey []byte      // content last read, loaded or not
	certStat, keyStat os.FileInfo // metadata last seen by the poll

	watcher   *fsnotify.Watcher
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// NewCertReloader loads the pair once, failing if it is not valid, and then
// keeps it current until Close. certFile may hold intermediate certificates
// after the leaf, as tls.LoadX509KeyPair accepts.
func NewCertReloader(certFile, keyFile string, opts ReloaderOptions) (*CertReloader, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.SettleDelay <= 0 {
		opts.SettleDelay = DefaultSettleDelay
	}
	r := &CertReloader{certFile: certFile, keyFile: keyFile, opts: opts, done: make(chan struct{})}
	// Watch before the first load, so a change made in between is not
	// missed until the next poll. A watcher that cannot start (inotify
	// limits are per user and often exhausted on busy nodes) is not fatal:
	// the poll still works, and OnReload hears about it.
	var watchErr error
	if !opts.noWatch {
		r.watcher, watchErr = watchDirs(certFile, keyFile)
	}
	if err := r.Reload(); err != nil {
		if r.watcher != nil {
			r.watcher.Close()
		}
		return nil, err
	}
	r.wg.Add(1)
	go r.run(watchErr)
	return r, nil
}

func watchDirs(certFile, keyFile string) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("tlsutil: watch certificate files (falling back to polling): %w", err)
	}
	dirs := []string{filepath.Dir(certFile)}
	if kd := filepath.Dir(keyFile); kd != dirs[0] {
		dirs = append(dirs, kd)
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			w.Close()
			return nil, fmt.Errorf("tlsutil: watch directory %s (falling back to polling): %w", d, err)
		}
	}
	return w, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.current.Load(), nil
}

// Certificate returns the pair in use now.
func (r *CertReloader) Certificate() *tls.Certificate { return r.current.Load() }

// Reload reads both files now and switches to them if they form a valid
// pair, even if they look unchanged. On error the previous pair stays in use.
func (r *CertReloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := r.loadLocked(true)
	return err
}

// Close stops watching. The last loaded certificate is still served.
func (r *CertReloader) Close() error {
	r.closeOnce.Do(func() {
		close(r.done)
		if r.watcher != nil {
			r.closeErr = r.watcher.Close()
		}
		r.wg.Wait()
	})
	return r.closeErr
}

// loadLocked reads the files and, if forced or their content changed since
// last read, parses and installs them. It reports whether it tried.
func (r *CertReloader) loadLocked(force bool) (tried bool, err error) {
	// Metadata for the poll, taken before reading so a write racing with
	// the read shows up as a change next time. nil if missing.
	r.certStat, _ = os.Stat(r.certFile)
	r.keyStat, _ = os.Stat(r.keyFile)
	certPEM, err := os.ReadFile(r.certFile)
	if err != nil {
		return true, fmt.Errorf("tlsutil: read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(r.keyFile)
	if err != nil {
		return true, fmt.Errorf("tlsutil: read private key: %w", err)
	}
	if !force && bytes.Equal(certPEM, r.seenCert) && bytes.Equal(keyPEM, r.seenKey) {
		return false, nil
	}
	r.seenCert, r.seenKey = certPEM, keyPEM
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// tls's messages ("failed to find any PEM data in certificate
		// input", "private key does not match public key") say what is wrong
		// but not where.
		return true, fmt.Errorf("tlsutil: load certificate %s with key %s: %w", r.certFile, r.keyFile, err)
	}
	r.current.Store(&pair)
	return true, nil
}

func (r *CertReloader) run(watchErr error) {
	defer r.wg.Done()
	if watchErr != nil {
		r.report(nil, watchErr)
	}
	ticker := time.NewTicker(r.opts.PollInterval)
	defer ticker.Stop()
	// Stopped until the first event; since Go 1.23 Stop leaves no stale
	// tick in the channel.
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()

	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if r.watcher != nil {
		events, watchErrs = r.watcher.Events, r.watcher.Errors
	}
	for {
		select {
		case <-r.done:
			return
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// Any event in the directory counts: Kubernetes' swap touches
			// "..data", not the file names we were given. The content
			// comparison in loadLocked filters out unrelated files.
			settle.Reset(r.opts.SettleDelay)
		case err, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
				continue
			}
			r.report(nil, fmt.Errorf("tlsutil: watching certificate files (falling back to polling): %w", err))
		case <-settle.C:
			r.reloadIfChanged(false)
		case <-ticker.C:
			r.reloadIfChanged(true)
		}
	}
}

func (r *CertReloader) reloadIfChanged(onlyIfStatChanged bool) {
	r.mu.Lock()
	if onlyIfStatChanged && !r.statChangedLocked() {
		r.mu.Unlock()
		return
	}
	tried, err := r.loadLocked(false)
	r.mu.Unlock()
	if !tried {
		return
	}
	if err != nil {
		r.report(nil, err)
		return
	}
	r.report(r.current.Load().Leaf, nil)
}

// statChangedLocked compares the files' metadata with the last look. It
// follows symlinks, so a Kubernetes "..data" swap shows as a different file.
func (r *CertReloader) statChangedLocked() bool {
	changed := func(path string, before os.FileInfo) bool {
		now, err := os.Stat(path)
		if err != nil || before == nil {
			return err == nil || before != nil
		}
		return !os.SameFile(before, now) || !now.ModTime().Equal(before.ModTime()) || now.Size() != before.Size()
	}
	return changed(r.certFile, r.certStat) || changed(r.keyFile, r.keyStat)
}

func (r *CertReloader) report(leaf *x509.Certificate, err error) {
	if r.opts.OnReload != nil {
		r.opts.OnReload(leaf, err)
	}
}
