#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (default 10s).
set -euo pipefail
fuzztime=${FUZZTIME:-10s}
status=0
while IFS= read -r file; do
  pkg=./$(dirname "$file")
  for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
    echo "== $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" || status=1
  done
done < <(grep -l '^func Fuzz' $(git ls-files '*_test.go') | sort)
exit $status
