package repo

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The word index of SEARCH BODY/TEXT: one definition, in Go, of how a
// text becomes words (SearchWords, at ingest) and of which words a search
// string guarantees (SearchTerms, at query time). The database only
// stores and matches the words; it never tokenizes text itself.
//
// A word is a maximal run of word runes (IsWordRune: Unicode alphabetic
// characters and decimal digits, the alnum class of UTS #18 Annex C,
// which is what glibc's [:alnum:] implements), lower-cased rune by rune
// with Unicode's simple case mapping (unicode.ToLower), which is what
// PostgreSQL's lower() and ILIKE do under a libc or builtin locale with a
// UTF-8 database: one rune to one rune. Rows written before migration
// 0050 were tokenized by SQL (regexp [:alnum:] runs, lower()), which gives
// the same words for every character the database's locale knows.
//
// Soundness: IMAP SEARCH is a case-insensitive substring match, confirmed
// on the stored text; the index only narrows the candidates, so it must
// never reject a text that contains the search string. SearchTerms yields
// only ASCII words bounded by ASCII non-word characters, so whatever a
// matching text looks like around them, the text has exactly that run
// (or a run starting with it), whatever the locale thinks of non-ASCII
// characters. The only non-ASCII runes that lower-case to ASCII word
// runes (U+0130 'İ' to 'i', U+212A KELVIN SIGN to 'k') are letters to
// both sides and lower-case alike.

// Bounds of the word index.
const (
	// MaxWordBytes: a longer run is indexed by its first MaxWordBytes
	// bytes (at a rune boundary). That keeps every term sound: an exact
	// term is at most MaxTermBytes long, so it never equals a cut run by
	// mistake in a way that hides a match, and a prefix term is a prefix
	// of the cut run too.
	MaxWordBytes = 1024
	// MaxTermBytes bounds one search term; longer runs of a search string
	// yield no term.
	MaxTermBytes = 511
	// MaxIndexBytes bounds the distinct words of one text (their bytes
	// summed); a text with more is not indexed at all, only flagged.
	MaxIndexBytes = 256 << 10
	// MaxSearchTerms bounds the terms taken from one search string.
	MaxSearchTerms = 16
	// UnindexedWord marks a text the index does not cover: no run can
	// produce it ('_' is not a word rune) and every prefilter accepts it.
	UnindexedWord = "_unindexed"
)

// IsWordRune reports whether r belongs to a word: alphabetic (letters,
// letter numbers, other alphabetic marks) or a decimal digit.
func IsWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return asciiWord[r]
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.In(r, unicode.Nl, unicode.Other_Alphabetic)
}

// asciiWord is IsWordRune for ASCII, a table lookup in the tokenizer's
// inner loop.
var asciiWord = func() (t [utf8.RuneSelf]bool) {
	for c := range t {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
	}
	return t
}()

// isASCIIDelim: an ASCII character that is not a word rune ends a run in
// every locale.
func isASCIIDelim(b byte) bool { return b < utf8.RuneSelf && !IsWordRune(rune(b)) }

// SearchWords returns the distinct words of text, in no particular order
// (array_to_tsvector sorts them), each cut to MaxWordBytes. A text whose
// distinct words exceed MaxIndexBytes gets the single word UnindexedWord
// instead (it is then checked by every search).
func SearchWords(text string) []string {
	// Sized for a typical text (a distinct word per 10 bytes or so), so
	// that the set rarely grows while it is filled.
	seen := make(map[string]struct{}, min(len(text)/10, 1<<14))
	total := 0
	for i := 0; i < len(text); {
		if b := text[i]; b < utf8.RuneSelf {
			if !asciiWord[b] {
				i++
				continue
			}
		} else if r, n := utf8.DecodeRuneInString(text[i:]); !IsWordRune(r) {
			i += n
			continue
		}
		j, lowerASCII := i, true
		for j < len(text) {
			if b := text[j]; b < utf8.RuneSelf {
				if !asciiWord[b] {
					break
				}
				if b <= 'Z' && b >= 'A' {
					lowerASCII = false
				}
				j++
				continue
			}
			c, m := utf8.DecodeRuneInString(text[j:])
			if !IsWordRune(c) {
				break
			}
			lowerASCII = false
			j += m
		}
		w := text[i:j]
		if !lowerASCII {
			w = strings.ToLower(w) // rune by rune: unicode.ToLower
		}
		w = cutWord(w)
		if _, ok := seen[w]; !ok {
			total += len(w)
			if total > MaxIndexBytes {
				return []string{UnindexedWord}
			}
			seen[w] = struct{}{}
		}
		i = j
	}
	words := make([]string, 0, len(seen))
	for w := range seen {
		words = append(words, w)
	}
	return words
}

// cutWord cuts w to at most MaxWordBytes at a rune boundary.
func cutWord(w string) string {
	if len(w) <= MaxWordBytes {
		return w
	}
	n := MaxWordBytes
	for n > 0 && !utf8.RuneStart(w[n]) {
		n--
	}
	return w[:n]
}

// SearchTerm is a word every text containing the search string has:
// exactly Word, or (Prefix) a word starting with Word.
type SearchTerm struct {
	Word   string
	Prefix bool
}

// SearchTerms returns the terms (at most MaxSearchTerms, distinct) that
// every text containing s (case-insensitively) has among its
// SearchWords, unless the text is flagged UnindexedWord:
//
//   - an ASCII word run of s with an ASCII non-word character on both
//     sides is a whole run of any matching text: an exact term;
//   - a run with such a character before it and the end of s, or a
//     non-ASCII character, after it starts a run of the text: a prefix
//     term (a non-ASCII character may or may not continue the run in the
//     database's locale, for rows tokenized by SQL);
//   - the first run of s may be the tail of a longer run, and runs after a
//     non-ASCII character may be too, so they yield no term.
func SearchTerms(s string) []SearchTerm {
	var terms []SearchTerm
	for i := 0; i < len(s) && len(terms) < MaxSearchTerms; {
		if s[i] >= utf8.RuneSelf || !IsWordRune(rune(s[i])) {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] < utf8.RuneSelf && IsWordRune(rune(s[j])) {
			j++
		}
		if i > 0 && isASCIIDelim(s[i-1]) && j-i <= MaxTermBytes {
			t := SearchTerm{Word: strings.ToLower(s[i:j]), Prefix: j == len(s) || !isASCIIDelim(s[j])}
			if !slices.Contains(terms, t) {
				terms = append(terms, t)
			}
		}
		i = j
	}
	return terms
}
