#!/bin/bash
# Nightly image CI with atomicbuild: build with fresh package versions (no
# --lock: the archive's current versions, recorded in a new lock), test the
# image, diff it against the last published build, and publish (update
# repository, cloud uploads) only when the test passed.
#
#   ci/nightly.sh --manifest host.toml [--output DIR] [--published DIR]
#                 [--repo DIR] [--upload] [--case DIR]... [--firmware F]
#                 [--test-arg ARG]...
#
#   --published DIR  where the last published build's metadata is kept
#                    (DIR/latest.json; created; updated after a publish)
#   --repo DIR       publish the commit into this update repository
#   --upload         run the manifest's [[upload]] entries
#   --test-arg ARG   passed on to `atomicbuild test` (repeatable), e.g.
#                    --test-arg --memory --test-arg 4096
#
# Leaves in OUTPUT (default nightly/): the images, NAME-VERSION.json and
# .lock, reports/junit.xml, reports/test.json, reports/diff.md (a Markdown
# summary for a CI comment) and reports/test-logs/. Exits with the test's
# status; 0 only when the image passed and was published.
# ATOMICBUILD names the binary (default: atomicbuild on PATH).
set -euo pipefail

ab=${ATOMICBUILD:-atomicbuild}
manifest="" out=nightly published="" repo="" upload=0 firmware=both
cases=() test_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --manifest) manifest=$2; shift 2 ;;
    --output) out=$2; shift 2 ;;
    --published) published=$2; shift 2 ;;
    --repo) repo=$2; shift 2 ;;
    --upload) upload=1; shift ;;
    --case) cases+=(--case "$2"); shift 2 ;;
    --firmware) firmware=$2; shift 2 ;;
    --test-arg) test_args+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "nightly.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$manifest" ] || { echo "nightly.sh: --manifest is required (see --help)" >&2; exit 2; }

step() { printf '\n==> nightly: %s\n' "$*" >&2; }
reports="$out/reports"
mkdir -p "$reports"

step "build $manifest (fresh package versions)"
"$ab" build --manifest "$manifest" --output "$out"
meta=$(ls -t "$out"/*.json | head -n 1)

step "test"
set +e
"$ab" test --manifest "$manifest" --output "$out" --firmware "$firmware" \
  --junit "$reports/junit.xml" --keep-logs "$reports/test-logs" --json \
  "${cases[@]}" "${test_args[@]}" > "$reports/test.json"
tested=$?
set -e

if [ -n "$published" ] && [ -f "$published/latest.json" ]; then
  step "diff against $published/latest.json"
  "$ab" diff "$published/latest.json" "$meta" --format markdown > "$reports/diff.md"
  "$ab" diff "$published/latest.json" "$meta" >&2
else
  echo "no published build to diff against${published:+ in $published}" > "$reports/diff.md"
fi

if [ "$tested" -ne 0 ]; then
  step "not publishing: the test failed (exit $tested); see $reports/junit.xml and $reports/test-logs"
  exit "$tested"
fi
if [ -n "$repo" ]; then
  step "publish into $repo"
  "$ab" publish --manifest "$manifest" --output "$out" --repo "$repo"
fi
if [ "$upload" = 1 ]; then
  step "upload"
  "$ab" build --manifest "$manifest" --output "$out" --upload
fi
if [ -n "$published" ]; then
  mkdir -p "$published"
  cp "$meta" "$published/latest.json.tmp"
  mv "$published/latest.json.tmp" "$published/latest.json"
fi
step "done: $meta passed and was published"
