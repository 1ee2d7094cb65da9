#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kube-scheduler from the Go modules
# pinned in testbed/controlplane/go.mod into a per-version cache outside the clone, so a fresh
# clone on the same machine (CI) reuses them. Skips binaries that already exist.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=testbed/scripts/lib.sh
. "$here/scripts/lib.sh"

cd "$here/controlplane"
export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

k8s_version=$(kube_version)
etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
bin_dir=$(bin_cache_dir)
mkdir -p "$bin_dir"

minor=${k8s_version#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

targets=(
  "etcd go.etcd.io/etcd/server/v3"
  "kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver"
  "kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager"
  "kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler"
)
missing=0
for t in "${targets[@]}"; do [ -x "$bin_dir/${t%% *}" ] || missing=$((missing + 1)); done
if [ "$missing" -eq 0 ]; then
  say "control plane $k8s_version (etcd $etcd_version) already built in $bin_dir"
  exit 0
fi

say "building $missing control-plane binaries for Kubernetes $k8s_version, etcd $etcd_version"
say "first build on 2 cores takes about 15-25 minutes; later runs reuse $bin_dir"
total_start=$(date +%s)
say "downloading Go modules"
go mod download
i=0
for t in "${targets[@]}"; do
  name=${t%% *}; pkg=${t#* }
  i=$((i + 1))
  if [ -x "$bin_dir/$name" ]; then
    say "[$i/${#targets[@]}] $name: cached"
    continue
  fi
  start=$(date +%s)
  say "[$i/${#targets[@]}] building $name ..."
  # Build into a temp name so an interrupted build never leaves a half-written binary behind.
  go build -trimpath -ldflags "$ldflags" -o "$bin_dir/.$name.tmp" "$pkg" &
  build_pid=$!
  while kill -0 "$build_pid" 2>/dev/null; do
    sleep 30
    kill -0 "$build_pid" 2>/dev/null && say "    $name still building ($(( $(date +%s) - start ))s)"
  done
  wait "$build_pid"
  mv "$bin_dir/.$name.tmp" "$bin_dir/$name"
  say "[$i/${#targets[@]}] $name built in $(( $(date +%s) - start ))s"
done
say "control plane built in $(( $(date +%s) - total_start ))s into $bin_dir"
