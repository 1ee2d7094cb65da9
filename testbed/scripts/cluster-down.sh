#!/usr/bin/env bash
# Stops exactly the testbed processes that cluster-up started (by pid file), newest first.
# Keeps the built binaries, the certificates and etcd's data; the safety routes stay so pod and
# service addresses never fall through to the default route.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The node agent first, with SIGINT: it stops every pod it runs.
stop_component kubeoc-controller INT
stop_component kubeoc-model
stop_component kubeoc-node INT
# Whatever pod processes survived it (a node agent killed hard) go with their cgroups.
for cg in /sys/fs/cgroup/unified/kubeoc-testbed /sys/fs/cgroup/kubeoc-testbed; do
  [ -d "$cg" ] && echo 1 >"$cg/cgroup.kill" 2>/dev/null || true
done
for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^kubeoc-/ {print $1}'); do
  ip netns del "$ns" 2>/dev/null || true
done
for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do
  stop_component "$name"
done
if ip link show "$bridge_name" >/dev/null 2>&1; then
  ip link del "$bridge_name" || say "could not delete bridge $bridge_name"
fi
say "testbed stopped"
