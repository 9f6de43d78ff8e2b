package repo

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func benchText() string {
	rng := rand.New(rand.NewPCG(1, 2))
	vocab := make([]string, 3000)
	for i := range vocab {
		w := make([]byte, 3+rng.IntN(8))
		for j := range w {
			w[j] = byte('a' + rng.IntN(26))
		}
		vocab[i] = string(w)
	}
	var b strings.Builder
	for b.Len() < 10<<10 {
		b.WriteString(vocab[rng.IntN(len(vocab))] + " ")
	}
	return b.String()
}

// BenchmarkSearchWords10KiB: the ingest cost of the word index for a
// 10 KiB text of about 1,000 distinct words.
func BenchmarkSearchWords10KiB(b *testing.B) {
	text := benchText()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		SearchWords(text)
	}
}
