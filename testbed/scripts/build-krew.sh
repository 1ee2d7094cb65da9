#!/usr/bin/env bash
# Builds krew (the kubectl plugin manager) from its Go module into a per-version cache outside
# the clone, as kubectl-krew, for the test that installs kubeoc with it. Prints the binary.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=testbed/scripts/lib.sh
. "$here/scripts/lib.sh"

version=v0.4.3
dir="${XDG_CACHE_HOME:-$HOME/.cache}/kubeoc/krew/$version"
bin="$dir/kubectl-krew"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say "building krew $version from sigs.k8s.io/krew (about a minute; later runs reuse $dir)" >&2
start=$(date +%s)
GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod GOBIN="$tmp" \
  go install -trimpath -ldflags "-s -w" "sigs.k8s.io/krew/cmd/krew@$version" >&2
mv "$tmp/krew" "$bin"
say "krew built in $(( $(date +%s) - start ))s: $bin" >&2
echo "$bin"
