package pgrepo

import (
	"slices"
	"testing"

	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// Overlapping ranges would join a message twice in SQL; uidArrays merges.
func TestUIDArraysMerge(t *testing.T) {
	lo, hi := uidArrays(repo.UIDSet{{Start: 5, Stop: 9}, {Start: 1, Stop: 2}, {Start: 3, Stop: 3}, {Start: 8, Stop: 12}, {Start: 20, Stop: 15}})
	if !slices.Equal(lo, []int64{1, 5, 15}) || !slices.Equal(hi, []int64{3, 12, 20}) {
		t.Fatalf("got %v %v", lo, hi)
	}
	lo, hi = uidArrays(nil)
	if !slices.Equal(lo, []int64{1}) || !slices.Equal(hi, []int64{maxUID}) {
		t.Fatalf("all: %v %v", lo, hi)
	}
}

func TestUIDRanges(t *testing.T) {
	got := uidRanges([]int64{1, 2, 3, 5, 7, 8, 4294967295})
	want := []repo.UIDRange{{Start: 1, Stop: 3}, {Start: 5, Stop: 5}, {Start: 7, Stop: 8}, {Start: 4294967295, Stop: 4294967295}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v", got)
	}
	if got := uidRanges(nil); got != nil {
		t.Fatalf("empty: %v", got)
	}
}
