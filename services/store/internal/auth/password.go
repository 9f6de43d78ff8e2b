package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
)

// ErrMalformedHash is returned for a stored hash that is not an argon2id PHC
// string this package can verify.
var ErrMalformedHash = errors.New("auth: malformed password hash")

// Params are the argon2id cost parameters (RFC 9106 §3.1).
type Params struct {
	// Memory in KiB.
	Memory uint32
	// Time is the number of passes over the memory.
	Time uint32
	// Threads is the degree of parallelism (lanes).
	Threads uint8
	// SaltLen and KeyLen are in bytes.
	SaltLen uint32
	KeyLen  uint32
}

// DefaultParams are the parameters for new hashes: 64 MiB, 2 passes, one
// lane, close to the second recommended option of RFC 9106 §4 but cheaper in
// memory so that a store under a burst of logins does not run out of it.
var DefaultParams = Params{Memory: 64 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Limits on parameters read from a stored hash. A corrupted or hostile row
// must not make the store allocate gigabytes or spin for minutes.
const (
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 64
	minSaltLen   = 8
	maxSaltLen   = 64
	minKeyLen    = 16
	maxKeyLen    = 64
)

// Validate reports every problem with the parameters at once.
func (p Params) Validate() error {
	var errs []error
	if p.Threads < 1 {
		errs = append(errs, errors.New("argon2id threads must be at least 1"))
	}
	// RFC 9106 §3.1: memory must be at least 8 KiB per lane.
	if p.Memory < 8*max(uint32(p.Threads), 1) || p.Memory > maxMemoryKiB {
		errs = append(errs, fmt.Errorf("argon2id memory %d KiB out of range [8*threads, %d]", p.Memory, maxMemoryKiB))
	}
	if p.Time < 1 || p.Time > maxTime {
		errs = append(errs, fmt.Errorf("argon2id time %d out of range [1, %d]", p.Time, maxTime))
	}
	if p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen {
		errs = append(errs, fmt.Errorf("argon2id salt length %d out of range [%d, %d]", p.SaltLen, minSaltLen, maxSaltLen))
	}
	if p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen {
		errs = append(errs, fmt.Errorf("argon2id key length %d out of range [%d, %d]", p.KeyLen, minKeyLen, maxKeyLen))
	}
	return errors.Join(errs...)
}

// Hasher hashes and verifies passwords with fixed parameters. It is safe for
// concurrent use.
type Hasher struct {
	params Params
	rand   io.Reader
	// dummy is a hash of a random secret with the current parameters,
	// verified for login names that do not exist so the work done is the
	// same as for a real account.
	dummy string
	// verifications counts argon2id computations in Verify, so tests can
	// prove that unknown and known login names cost the same work.
	verifications atomic.Int64
}

// NewHasher returns a Hasher for params (DefaultParams when zero).
func NewHasher(params Params) (*Hasher, error) {
	if params == (Params{}) {
		params = DefaultParams
	}
	if err := params.Validate(); err != nil {
		return nil, fmt.Errorf("auth: invalid password hash parameters: %w", err)
	}
	h := &Hasher{params: params, rand: rand.Reader}
	secret := make([]byte, 32)
	if _, err := io.ReadFull(h.rand, secret); err != nil {
		return nil, fmt.Errorf("auth: generate dummy password: %w", err)
	}
	dummy, err := h.Hash(base64.RawStdEncoding.EncodeToString(secret))
	if err != nil {
		return nil, err
	}
	h.dummy = dummy
	return h, nil
}

// Params returns the parameters used for new hashes.
func (h *Hasher) Params() Params { return h.params }

// Hash returns the PHC string of an argon2id hash of password with a fresh
// random salt.
func (h *Hasher) Hash(password string) (string, error) {
	salt := make([]byte, h.params.SaltLen)
	if _, err := io.ReadFull(h.rand, salt); err != nil {
		return "", fmt.Errorf("auth: generate salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, h.params.Time, h.params.Memory, h.params.Threads, h.params.KeyLen)
	return encodePHC(h.params, salt, key), nil
}

// Verify reports whether password matches the encoded hash. The comparison
// is constant-time; a hash that cannot be parsed yields ErrMalformedHash.
func (h *Hasher) Verify(encoded, password string) (bool, error) {
	p, salt, key, err := decodePHC(encoded)
	if err != nil {
		return false, err
	}
	h.verifications.Add(1)
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// VerifyDummy does the work of Verify against a hash no password matches.
// It is called for unknown login names so that they take as long as a wrong
// password for a real account.
func (h *Hasher) VerifyDummy(password string) {
	// The dummy hash is produced by this Hasher, so it always parses.
	_, _ = h.Verify(h.dummy, password)
}

// NeedsRehash reports whether encoded was made with other parameters than
// the current ones (or cannot be parsed), so that a successful login should
// store a new hash.
func (h *Hasher) NeedsRehash(encoded string) bool {
	p, salt, _, err := decodePHC(encoded)
	if err != nil {
		return true
	}
	p.SaltLen = uint32(len(salt))
	return p != h.params
}

func encodePHC(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt),
		base64.RawStdEncoding.EncodeToString(key))
}

// decodePHC parses "$argon2id$v=19$m=M,t=T,p=P$salt$hash". Parameters must
// appear in that order, as every argon2 implementation writes them.
func decodePHC(encoded string) (Params, []byte, []byte, error) {
	var p Params
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" {
		return p, nil, nil, fmt.Errorf("%w: want 5 '$'-separated fields", ErrMalformedHash)
	}
	if parts[1] != "argon2id" {
		return p, nil, nil, fmt.Errorf("%w: algorithm %q is not argon2id", ErrMalformedHash, parts[1])
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("%w: unsupported version %q", ErrMalformedHash, parts[2])
	}
	fields := strings.Split(parts[3], ",")
	if len(fields) != 3 {
		return p, nil, nil, fmt.Errorf("%w: want parameters m, t, p", ErrMalformedHash)
	}
	var vals [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(fields[i], name+"=")
		if !ok {
			return p, nil, nil, fmt.Errorf("%w: parameter %d is not %s", ErrMalformedHash, i+1, name)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, nil, nil, fmt.Errorf("%w: parameter %s: %v", ErrMalformedHash, name, err)
		}
		vals[i] = n
	}
	if vals[2] > 255 {
		return p, nil, nil, fmt.Errorf("%w: parallelism %d too large", ErrMalformedHash, vals[2])
	}
	p.Memory, p.Time, p.Threads = uint32(vals[0]), uint32(vals[1]), uint8(vals[2])
	salt, err := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil {
		return p, nil, nil, fmt.Errorf("%w: salt: %v", ErrMalformedHash, err)
	}
	key, err := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil {
		return p, nil, nil, fmt.Errorf("%w: hash: %v", ErrMalformedHash, err)
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	if err := p.Validate(); err != nil {
		return p, nil, nil, fmt.Errorf("%w: %v", ErrMalformedHash, err)
	}
	return p, salt, key, nil
}
