package repo

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestSearchWords(t *testing.T) {
	for text, want := range map[string][]string{
		"Hello, hello-WORLD x.y@Example.com": {"com", "example", "hello", "world", "x", "y"},
		"İSTANBUL \u212aelvin ΣΑΣ ǅx":        {"istanbul", "kelvin", "ǆx", "σασ"},
		"3rd٣٤ Ⅻ a\u0301b foo_bar ½":         {"3rd٣٤", "a", "b", "bar", "foo", "ⅻ"},
		"日本語テキスト、한국어":                        {"日本語テキスト", "한국어"},
		"  \t\r\n…":                          {},
	} {
		got := SearchWords(text)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("SearchWords(%q) = %q, want %q", text, got, want)
		}
	}
	// A long run is cut at a rune boundary.
	long := strings.Repeat("a", MaxWordBytes-1) + "éé"
	if got := SearchWords(long); len(got) != 1 || got[0] != long[:MaxWordBytes-1] || !utf8.ValidString(got[0]) {
		t.Errorf("long run: %d words, first %d bytes", len(got), len(got[0]))
	}
	// Too many distinct words: only the marker.
	var b strings.Builder
	for i := 0; i*len("w0000000") <= MaxIndexBytes; i++ {
		fmt.Fprintf(&b, "w%07d ", i)
	}
	if got := SearchWords(b.String()); !slices.Equal(got, []string{UnindexedWord}) {
		t.Errorf("over the cap: %d words", len(got))
	}
	// The same words many times stay well under the cap.
	if got := SearchWords(strings.Repeat("filler words here ", 50000)); len(got) != 3 {
		t.Errorf("repeated words: %q", got)
	}
}

// TestSearchTermsAgreeWithWords: whatever substring of a text a search
// string is, with its case changed in any way ILIKE ignores, every term
// SearchTerms derives from it is among the text's SearchWords (exactly,
// or as a prefix), unless the text is flagged. This is the property the
// prefilter's soundness rests on.
func TestSearchTermsAgreeWithWords(t *testing.T) {
	var many strings.Builder
	for i := 0; i*len("w0000000") <= MaxIndexBytes+100; i++ {
		fmt.Fprintf(&many, "W%07d, ", i)
	}
	texts := []string{
		"Dear customer, your invoice #INV-2026-0042 (due 2026-12-01) is attached. Visit https://shop.example.com/deals?id=42&x=y.",
		"ÉCOLE école Grüße STRASSE ΣΑΣ ς ǅ Ǆ İSTANBUL \u212aelvin ﬁle Ⅻ ⅻ ٣٤٥ १२३",
		"mixedСкриптText ABCабв 123абв 日本語テキスト、한국어 텍스트; русский ТЕКСТ; العربية",
		"tab\tnew\nline\r\nend  — dash … ellipsis «quotes» “curly” ½ ² ① a\u0301b e\u0301cole",
		"x " + strings.Repeat("Ab", 700) + "zz tail " + strings.Repeat("9", 3000) + " end",
		"run" + strings.Repeat("é", 600) + "X-Y_z",
		many.String() + "closing remark",
	}
	// equivalents are the runes ILIKE treats as r: same lower case.
	equivalents := func(r rune) []rune {
		out := []rune{r}
		for _, c := range []rune{unicode.ToLower(r), unicode.ToUpper(r), unicode.ToTitle(r)} {
			if unicode.ToLower(c) == unicode.ToLower(r) && !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
		switch unicode.ToLower(r) {
		case 'i':
			out = append(out, 'İ')
		case 'k':
			out = append(out, '\u212a')
		}
		return out
	}
	rng := rand.New(rand.NewPCG(1, 2))
	checked := 0
	for _, text := range texts {
		words := SearchWords(text)
		slices.Sort(words)
		flagged := slices.Equal(words, []string{UnindexedWord})
		has := func(term SearchTerm) bool {
			if flagged {
				return true
			}
			if !term.Prefix {
				_, ok := slices.BinarySearch(words, term.Word)
				return ok
			}
			return slices.ContainsFunc(words, func(w string) bool { return strings.HasPrefix(w, term.Word) })
		}
		runes := []rune(text)
		for range 3000 {
			i := rng.IntN(len(runes))
			j := i + 1 + rng.IntN(min(len(runes)-i, 80))
			var s strings.Builder
			for _, r := range runes[i:j] {
				eq := equivalents(r)
				s.WriteRune(eq[rng.IntN(len(eq))])
			}
			for _, term := range SearchTerms(s.String()) {
				checked++
				if !has(term) {
					t.Fatalf("text %.40q... contains %q, but its words lack the term %+v", text, s.String(), term)
				}
			}
		}
	}
	if checked < 1000 {
		t.Fatalf("only %d terms checked", checked)
	}
}

func TestSearchTerms(t *testing.T) {
	for s, want := range map[string][]SearchTerm{
		"invoice":       nil, // may be the tail of a longer run
		" Invoice":      {{"invoice", true}},
		" INVOICE #42.": {{"invoice", false}, {"42", false}},
		"x caf\u00e9 ":  {{"caf", true}},
		"x ĀBC y":       {{"y", true}},
		"x " + strings.Repeat("a", MaxTermBytes+1) + " y": {{"y", true}},
	} {
		if got := SearchTerms(s); !slices.Equal(got, want) {
			t.Errorf("SearchTerms(%q) = %+v, want %+v", s, got, want)
		}
	}
	if got := SearchTerms(strings.Repeat(" w", 100)); len(got) != 2 { // 'w' and the last, 'w':*
		t.Errorf("repeated term: %+v", got)
	}
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, " w%d", i)
	}
	if got := SearchTerms(b.String()); len(got) != MaxSearchTerms {
		t.Errorf("%d terms, want %d", len(got), MaxSearchTerms)
	}
}
