#!/usr/bin/env bash
# Runs two builds of the parser program on the same pages and fails if any output differs: a change
# meant to make the parser faster must not change what it reads.
#
#   bash wasm/compare.sh BEFORE AFTER [FILE|DIR]...
#
# BEFORE and AFTER are native parser binaries (`cargo build --release --bin packagestats-parser`, the
# old one copied outside the tree first). Every file is parsed as each page kind; stdout, stderr and
# the exit status must be byte-identical. Without FILE|DIR arguments: the captured pages, the fixtures,
# the pages the tests generate with drifted variants of all of them (compare_pages.py) and the fuzz
# corpus (wasm/fuzz/corpus/parse, made by `bash wasm/fuzz/run.sh`).
set -euo pipefail
if (($# < 2)); then
  echo "usage: $0 BEFORE AFTER [FILE|DIR]..." >&2
  exit 2
fi
before=$1 after=$2
shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
out=$(mktemp -d "${TMPDIR:-/tmp}/parser-compare.XXXXXX")
trap 'rm -rf "$out"' EXIT
if (($# == 0)); then
  "$repo/.venv/bin/python" "$here/compare_pages.py" "$out/pages" \
    "$repo"/tests/data/ghcr-pages/*.html "$repo"/tests/fixtures/pages/*.html
  set -- "$repo/tests/data/ghcr-pages" "$repo/tests/fixtures" "$out/pages"
  if [[ -d $here/fuzz/corpus/parse ]]; then
    set -- "$@" "$here/fuzz/corpus/parse"
  fi
fi
files=0 runs=0 differ=0
while IFS= read -r -d '' page; do
  files=$((files + 1))
  for kind in package versions listing; do
    runs=$((runs + 1))
    code=0; "$before" "$kind" "$page" >"$out/b.out" 2>"$out/b.err" || code=$?
    echo "$code" >>"$out/b.out"
    code=0; "$after" "$kind" "$page" >"$out/a.out" 2>"$out/a.err" || code=$?
    echo "$code" >>"$out/a.out"
    if ! cmp -s "$out/b.out" "$out/a.out" || ! cmp -s "$out/b.err" "$out/a.err"; then
      differ=$((differ + 1))
      echo "DIFFERS: $kind $page" >&2
    fi
  done
done < <(find "$@" -type f -print0 | sort -z)
echo "compare.sh: $files files, $runs parses, $differ differ"
((files > 0 && differ == 0))
