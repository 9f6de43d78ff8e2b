#!/usr/bin/env bash
# fuzz.sh [DURATION] — run every Go fuzz target in the repository for DURATION
# (default 30s) each. Targets are found by their `func FuzzXxx(f *testing.F)`.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-30s}
grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' platform services |
	while read -r file; do
		dir=./$(dirname "$file")
		grep -oE '^func Fuzz[A-Za-z0-9_]+' "$file" | sed 's/^func //' | while read -r target; do
			echo "fuzz: $dir $target ($time)"
			go test -run='^$' -fuzz="^${target}\$" -fuzztime="$time" "$dir"
		done
	done
