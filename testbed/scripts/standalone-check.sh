#!/usr/bin/env bash
# The repository stands alone: a copy of it (its tracked and new files, as a clone would have
# them) in a temporary folder with nothing beside it passes the unit tests, and no file of the
# repository reads outside it. Only `make test-upstream` reads upstream's YAML, from
# $KUBEOC_UPSTREAM_EXAMPLES, which .ci/run sets.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cd "$repo_root"
# Files that name a path beside the repository root. .ci/run is the one file allowed to: it
# hands the upstream-compatibility tests their data.
outside=$(git ls-files -co --exclude-standard -z |
  grep -zvE '^(\.ci/run|testbed/scripts/standalone-check\.sh)$' | xargs -0 -r grep -lE '\.\./shared|/shared/(seed|upstream-examples)' || true)
[ -z "$outside" ] || die "these files read outside the repository: $outside"

scratch=$(mktemp -d /tmp/kubeoc-standalone.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
copy="$scratch/kubeoc"
mkdir "$copy"
git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$copy"
[ ! -e "$scratch/shared" ] || die "$scratch/shared exists"
say "unit tests in a stand-alone copy at $copy (nothing beside it)"
# A target directory of its own: sharing the main one let the copy's build of the testbed
# crate (which records its source path) replace the main tree's, so later test runs looked
# for the testbed under the deleted copy. Kept between runs, so only the first is slow.
(cd "$copy" && env -u KUBEOC_UPSTREAM_EXAMPLES CARGO_TARGET_DIR="$repo_root/target/standalone" \
  cargo test --locked --workspace --lib --bins)
say "the stand-alone copy passes its unit tests"
