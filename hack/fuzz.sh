#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for a bounded time each:
# FUZZTIME per target (default 20s; CI uses less), one `go test -fuzz`
# per target as go requires. Targets are found by their declaration
# (func FuzzXxx(f *testing.F) in a _test.go file), so a new one is run
# without editing this script. Each target's seed corpus in
# testdata/fuzz/FuzzXxx is replayed by plain `go test` too.
#
# It prints each target as it runs, and fails when any target finds a
# failing input; go writes that input to the package's
# testdata/fuzz/FuzzXxx/, where it becomes a regression test: commit it
# with the fix.
#
#   hack/fuzz.sh                      # every target, 20s each
#   FUZZTIME=2m hack/fuzz.sh FuzzDecode FuzzInfer
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-20s}
# Minimizing new interesting inputs would otherwise eat a short run.
minimize=${FUZZMINIMIZETIME:-2s}

# "package-dir target" lines, sorted.
targets=$(git ls-files -co --exclude-standard '*_test.go' |
  { xargs grep -s -H -o -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' || true; } |
  sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\(.*#./\1 \2#' |
  sort -u)
if [[ $# -gt 0 ]]; then
  want=" $* "
  targets=$(while read -r pkg name; do
    if [[ $want == *" $name "* ]]; then echo "$pkg $name"; fi
  done <<<"$targets")
fi
if [[ -z $targets ]]; then
  echo "fuzz: no targets found" >&2
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS
ran=() failed=() flaked=()
while read -r pkg name; do
  echo "fuzz: $name in $pkg for $fuzztime"
  ran+=("$name")
  if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$pkg" >"$log" 2>&1; then
    tail -n 1 "$log"
  elif ! grep -q 'Failing input written' "$log" && grep -qx '    context deadline exceeded' "$log" &&
    [[ $(grep -c -- '^--- FAIL' "$log") == 1 ]]; then
    # Go before 1.27 can report the end of -fuzztime as a failure
    # when a worker is mid-call (go.dev/issue/75804): no input failed.
    echo "fuzz: $name stopped with go's spurious 'context deadline exceeded' (go.dev/issue/75804); no failing input"
    flaked+=("$name")
  else
    cat "$log"
    failed+=("$name")
  fi
done <<<"$targets"

echo "fuzz: ran ${#ran[@]} targets for $fuzztime each in $((SECONDS - start))s: ${ran[*]}"
if [[ ${#flaked[@]} -gt 0 ]]; then
  echo "fuzz: stopped by go.dev/issue/75804, not by a failing input: ${flaked[*]}"
fi
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: FAILED: ${failed[*]} (failing inputs are in the packages' testdata/fuzz/)" >&2
  exit 1
fi
