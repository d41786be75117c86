#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (default 10s), one
# after another with one worker, and prints one line per target with its
# result. CI runs it short; issue-level runs use FUZZTIME=10m.
#   FUZZTIME=10m scripts/fuzz.sh [package-pattern]
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-10s}"
pattern="${1:-./...}"
status=0
while IFS=' ' read -r pkg name; do
	start=$(date +%s)
	if out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -parallel 1 "$pkg" 2>&1); then
		echo "fuzz ok   ${pkg} ${name} ${fuzztime} ($(($(date +%s) - start)) s) $(grep -o 'execs: [0-9]*' <<<"$out" | tail -n 1)"
	else
		echo "fuzz FAIL ${pkg} ${name} ${fuzztime}"
		echo "$out" | tail -n 30
		status=1
	fi
done < <(go list -f '{{.ImportPath}} {{.Dir}}' "$pattern" | while read -r pkg dir; do
	grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed "s|^func |$pkg |" || true
done)
exit $status
