#!/usr/bin/env bash
# build-go-tool.sh krew|kwok: builds a pinned Go tool from its module into a per-version cache
# outside the clone (so a fresh clone on the same machine reuses it) and prints the binary.
#   krew: the kubectl plugin manager, for the test that installs kubeoc with it (as kubectl-krew);
#   kwok: fake nodes and pods, for `make bench`'s 1,000 and 5,000 Agents; beside it stages.yaml,
#         the fast node and pod lifecycles from its own module (kwokctl builds them in; the kwok
#         binary needs them as configuration).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=testbed/scripts/lib.sh
. "$here/scripts/lib.sh"

case "${1:-}" in
  krew) version=v0.4.3 package=sigs.k8s.io/krew/cmd/krew binary=kubectl-krew ;;
  kwok) version=v0.8.0 package=sigs.k8s.io/kwok/cmd/kwok binary=kwok ;;
  *) die "usage: build-go-tool.sh krew|kwok" ;;
esac
tool=$1
dir="${XDG_CACHE_HOME:-$HOME/.cache}/kubeoc/$tool/$version"
bin="$dir/$binary"
kwok_stages() {
  local src f
  src="$(GOFLAGS=-mod=mod go env GOMODCACHE)/sigs.k8s.io/kwok@$version/kustomize/stage"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [ -f "$src/$f" ] || die "kwok's stage $f is not in the Go module cache ($src)"
    cat "$src/$f"
    echo '---'
  done >"$dir/.stages.yaml.tmp"
  mv "$dir/.stages.yaml.tmp" "$dir/stages.yaml"
}
if [ -x "$bin" ]; then
  [ "$tool" != kwok ] || [ -f "$dir/stages.yaml" ] || kwok_stages
  echo "$bin"
  exit 0
fi
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say "building $tool $version from $package (a minute or two; later runs reuse $dir)" >&2
start=$(date +%s)
GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod GOBIN="$tmp" \
  go install -trimpath -ldflags "-s -w" "$package@$version" >&2
mv "$tmp/${package##*/}" "$bin"
[ "$tool" != kwok ] || kwok_stages
say "$tool built in $(( $(date +%s) - start ))s: $bin" >&2
echo "$bin"
