package auth

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestHashAndVerify(t *testing.T) {
	h := newTestHasher(t)
	enc, err := h.Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`).MatchString(enc) {
		t.Fatalf("hash %q is not a PHC argon2id string with the configured parameters", enc)
	}
	ok, err := h.Verify(enc, "correct horse")
	if err != nil || !ok {
		t.Fatalf("Verify(right password) = %v, %v; want true", ok, err)
	}
	ok, err = h.Verify(enc, "correct horsf")
	if err != nil || ok {
		t.Fatalf("Verify(wrong password) = %v, %v; want false", ok, err)
	}
	again, _ := h.Hash("correct horse")
	if again == enc {
		t.Fatal("two hashes of one password are equal: salt is not random")
	}
}

// TestVerifyKnownVector checks interoperability with other argon2id
// implementations: this hash was made by the reference implementation
// (argon2 CLI: echo -n password | argon2 somesalt -id -t 2 -m 16 -p 1 -l 32).
func TestVerifyKnownVector(t *testing.T) {
	h := newTestHasher(t)
	const ref = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	ok, err := h.Verify(ref, "password")
	if err != nil || !ok {
		t.Fatalf("Verify(reference vector) = %v, %v; want true", ok, err)
	}
	if !h.NeedsRehash(ref) {
		t.Fatal("reference hash with other parameters does not need a rehash")
	}
}

func TestVerifyParamsFromHash(t *testing.T) {
	// A hash made with other parameters still verifies: they are read from
	// the string, not taken from the Hasher.
	old, err := NewHasher(Params{Memory: 128, Time: 2, Threads: 2, SaltLen: 8, KeyLen: 16})
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := old.Hash("pw")
	h := newTestHasher(t)
	if ok, err := h.Verify(enc, "pw"); err != nil || !ok {
		t.Fatalf("Verify(old params) = %v, %v", ok, err)
	}
	if !h.NeedsRehash(enc) {
		t.Fatal("NeedsRehash = false for other parameters")
	}
	cur, _ := h.Hash("pw")
	if h.NeedsRehash(cur) {
		t.Fatal("NeedsRehash = true for current parameters")
	}
	if !h.NeedsRehash("garbage") {
		t.Fatal("NeedsRehash = false for a malformed hash")
	}
}

func TestVerifyMalformed(t *testing.T) {
	h := newTestHasher(t)
	good, _ := h.Hash("pw")
	parts := strings.Split(good, "$")
	for name, enc := range map[string]string{
		"empty":          "",
		"bcrypt":         "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
		"argon2i":        strings.Replace(good, "argon2id", "argon2i", 1),
		"version 16":     strings.Replace(good, "v=19", "v=16", 1),
		"missing field":  strings.Join(parts[:5], "$"),
		"params order":   strings.Replace(good, "m=64,t=1,p=1", "t=1,m=64,p=1", 1),
		"huge memory":    strings.Replace(good, "m=64", "m=99999999", 1),
		"zero time":      strings.Replace(good, "t=1", "t=0", 1),
		"zero threads":   strings.Replace(good, "p=1", "p=0", 1),
		"bad salt b64":   strings.Join([]string{"", parts[1], parts[2], parts[3], "!!!!", parts[5]}, "$"),
		"short hash":     strings.Join([]string{"", parts[1], parts[2], parts[3], parts[4], "AAAA"}, "$"),
		"padded base64":  good + "=",
		"negative param": strings.Replace(good, "m=64", "m=-64", 1),
	} {
		t.Run(name, func(t *testing.T) {
			ok, err := h.Verify(enc, "pw")
			if ok || !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("Verify(%q) = %v, %v; want false, ErrMalformedHash", enc, ok, err)
			}
		})
	}
}

func TestParamsValidate(t *testing.T) {
	err := Params{Memory: 1, Time: 0, Threads: 0, SaltLen: 1, KeyLen: 1}.Validate()
	if err == nil {
		t.Fatal("invalid params accepted")
	}
	for _, want := range []string{"threads", "memory", "time", "salt", "key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %s", err, want)
		}
	}
	if _, err := NewHasher(Params{}); err != nil {
		t.Fatalf("NewHasher(zero) = %v; want defaults", err)
	}
	if DefaultParams.Validate() != nil {
		t.Fatal("DefaultParams invalid")
	}
}

func TestAppPassword(t *testing.T) {
	if len(appPasswordAlphabet) != 32 {
		t.Fatalf("alphabet has %d symbols; the byte mask needs 32", len(appPasswordAlphabet))
	}
	h := newTestHasher(t)
	pw, hash, err := h.NewAppPassword()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[a-z2-9]{5}(-[a-z2-9]{5}){3}$`).MatchString(pw) {
		t.Fatalf("app password %q not in the expected form", pw)
	}
	norm := NormalizeAppPassword(pw)
	if len(norm) != AppPasswordLen || len(norm) < minAppPasswordLen {
		t.Fatalf("normalized %q has %d chars", norm, len(norm))
	}
	typed := strings.ToUpper(strings.ReplaceAll(pw, "-", " "))
	if ok, err := h.Verify(hash, NormalizeAppPassword(typed)); err != nil || !ok {
		t.Fatalf("app password typed as %q does not verify: %v %v", typed, ok, err)
	}
	other, _ := GenerateAppPassword()
	if other == pw {
		t.Fatal("two generated app passwords are equal")
	}
}
