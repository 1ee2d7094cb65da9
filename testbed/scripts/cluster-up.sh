#!/usr/bin/env bash
# Brings the local testbed control plane up: network, certificates, etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler. Idempotent: healthy components are reused, missing
# ones are started again on the same data.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pki.sh"

started=$(date +%s)
[ "$(id -u)" -eq 0 ] || die "the testbed needs root (network namespaces, bridge, bind mounts)"
bash "$testbed_root/scripts/build-controlplane.sh"
bin_dir=$(bin_cache_dir)
mkdir -p "$state_dir" "$log_dir" "$run_dir"
# .testbed/bin/<version>/ points into the per-user cache so fresh clones reuse the build.
ln -sfn "$(dirname "$bin_dir")" "$state_dir/bin"

ensure_packages
network_up
pki_up

cat >"$state_dir/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
POLICY

port_owner() { ss -Hltnp "sport = :$1" 2>/dev/null | head -n1; }

# start NAME PROGRAM ARGS...: starts a component in its own session unless it is running.
reused=()
start() {
  local name=$1 program=$2; shift 2
  if pid_alive "$name"; then
    reused+=("$name")
    return 0
  fi
  say "starting $name (log: .testbed/logs/$name.log)"
  setsid "$program" "$@" >>"$log_dir/$name.log" 2>&1 </dev/null &
  echo $! >"$run_dir/$name.pid"
}

require_free_port() {
  local name=$1 port=$2 owner
  pid_alive "$name" && return 0
  owner=$(port_owner "$port")
  [ -z "$owner" ] || die "port $port, needed by $name, is taken by another process ($owner); stop it (another testbed? run 'make cluster-down' there) and retry"
}

require_free_port etcd 2379
require_free_port kube-apiserver "$apiserver_port"

start etcd "$bin_dir/etcd" \
  --name testbed --data-dir "$state_dir/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster testbed=http://127.0.0.1:2380 \
  --listen-metrics-urls http://127.0.0.1:2381 --log-level warn
wait_for "etcd health" 30 curl -sSf --max-time 2 http://127.0.0.1:2381/health

start kube-apiserver "$bin_dir/kube-apiserver" \
  --etcd-servers http://127.0.0.1:2379 \
  --bind-address "$bridge_ip" --advertise-address "$bridge_ip" --secure-port "$apiserver_port" \
  --tls-cert-file "$pki_dir/apiserver.crt" --tls-private-key-file "$pki_dir/apiserver.key" \
  --client-ca-file "$pki_dir/ca.crt" \
  --kubelet-client-certificate "$pki_dir/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$pki_dir/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$pki_dir/ca.crt" \
  --kubelet-preferred-address-types InternalIP \
  --service-account-key-file "$pki_dir/sa.pub" \
  --service-account-signing-key-file "$pki_dir/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range "$service_cidr" \
  --authorization-mode Node,RBAC \
  --enable-admission-plugins NodeRestriction \
  --allow-privileged=true \
  --audit-policy-file "$state_dir/audit-policy.yaml" \
  --audit-log-path "$log_dir/audit.log" --audit-log-maxsize 200 --audit-log-maxbackup 2 \
  --profiling=false
wait_for "kube-apiserver /readyz" 180 admin_curl /readyz

start kube-controller-manager "$bin_dir/kube-controller-manager" \
  --kubeconfig "$state_dir/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$state_dir/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$state_dir/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 10257 \
  --service-account-private-key-file "$pki_dir/sa.key" --root-ca-file "$pki_dir/ca.crt" \
  --use-service-account-credentials=true \
  --cluster-signing-cert-file "$pki_dir/ca.crt" --cluster-signing-key-file "$pki_dir/ca.key" \
  --service-cluster-ip-range "$service_cidr" --allocate-node-cidrs=false \
  --leader-elect=false --profiling=false

start kube-scheduler "$bin_dir/kube-scheduler" \
  --kubeconfig "$state_dir/scheduler.kubeconfig" \
  --authentication-kubeconfig "$state_dir/scheduler.kubeconfig" \
  --authorization-kubeconfig "$state_dir/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --profiling=false

wait_for "the default ServiceAccount" 120 admin_curl /api/v1/namespaces/default/serviceaccounts/default

# Our node agent and stub model. A running cluster is reused as it is; after changing their
# code, `make testbed-reload` (KUBEOC_TESTBED_RELOAD=1) restarts them on the new binary.
node_bin="$repo_root/target/debug/kubeoc-testbed"
say "building the node agent (cargo build -p kubeoc-testbed)"
(cd "$repo_root" && cargo build --quiet --locked -p kubeoc-testbed --bin kubeoc-testbed)
if [ "${KUBEOC_TESTBED_RELOAD:-0}" = 1 ]; then
  stop_component kubeoc-node INT
  stop_component kubeoc-model TERM
fi
opencode_bin=$(bash "$testbed_root/scripts/opencode.sh")
start kubeoc-node "$node_bin" node \
  --kubeconfig "$kubeconfig" --state-dir "$state_dir" \
  --node-ip "$bridge_ip" --bridge "$bridge_name" --pod-cidr "$pod_cidr" --service-cidr "$service_cidr" \
  --tls-cert "$pki_dir/node.crt" --tls-key "$pki_dir/node.key" --client-ca "$pki_dir/ca.crt" \
  --opencode-bin "$opencode_bin" --kube-version "$(kube_version)"
wait_for "node testbed-node-0 Ready" 60 node_ready
# The OpenAI-compatible stub model, on the bridge so pods reach it.
start kubeoc-model "$node_bin" model --listen "$model_addr" --requests-log "$log_dir/model-requests.jsonl"
wait_for "the stub model on $model_addr" 30 curl -sSf --max-time 2 "http://$model_addr/v1/models"

if [ "${#reused[@]}" -eq 6 ]; then
  say "reused the healthy testbed ($(kube_version)) in $(( $(date +%s) - started ))s"
else
  say "testbed $(kube_version) up in $(( $(date +%s) - started ))s"
fi
say "kubeconfig: $kubeconfig  (export KUBECONFIG=$kubeconfig)"
