#!/usr/bin/env bash
# Stops exactly the testbed processes that cluster-up started (by pid file), newest first.
# Keeps the built binaries, the certificates and etcd's data; the safety routes stay so pod and
# service addresses never fall through to the default route.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do
  pidfile="$run_dir/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
done
if ip link show "$bridge_name" >/dev/null 2>&1; then
  ip link del "$bridge_name" || say "could not delete bridge $bridge_name"
fi
say "testbed stopped"
