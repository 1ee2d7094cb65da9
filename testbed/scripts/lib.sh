# Shared helpers for the testbed scripts. Sourced, never run.
testbed_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repo_root=$(cd "$testbed_root/.." && pwd)
state_dir="$repo_root/.testbed"

say() { printf '[testbed %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# The Kubernetes version pinned in the control-plane go.mod: the one place it lives.
kube_version() {
  awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3; exit}' "$testbed_root/controlplane/go.mod"
}

bin_cache_dir() {
  echo "${XDG_CACHE_HOME:-$HOME/.cache}/kubeoc/testbed/$(kube_version)"
}

# The testbed network. Pods get addresses from pod_cidr behind the host bridge; the apiserver
# binds to the bridge address so pods and the host reach it on one address we own.
bridge_name=kubeoc0
bridge_ip=10.244.0.1
pod_cidr=10.244.0.0/16
service_cidr=10.96.0.0/16
apiserver_port=6443
apiserver_url="https://$bridge_ip:$apiserver_port"
# The stub model: pods use http://$model_addr/v1 as their OpenAI-compatible provider.
model_addr="$bridge_ip:18080"

pki_dir="$state_dir/pki"
log_dir="$state_dir/logs"
run_dir="$state_dir/run"
kubeconfig="$state_dir/kubeconfig"

# Binds the bridge address and routes the pod CIDR to it, with `unreachable` routes for pod and
# service CIDRs as a safety net: if the bridge is gone, traffic for those ranges fails here
# instead of leaving through the default route. Verified with `ip route get` before use.
network_up() {
  command -v ip >/dev/null || die "the 'ip' command (apt package iproute2) is missing"
  if ! ip link show "$bridge_name" >/dev/null 2>&1; then
    ip link add "$bridge_name" type bridge ||
      die "could not create bridge $bridge_name: the testbed needs root and a kernel that allows bridges"
  fi
  ip addr replace "$bridge_ip/16" dev "$bridge_name" ||
    die "could not assign $bridge_ip to $bridge_name"
  ip link set "$bridge_name" up || die "could not bring $bridge_name up"
  for cidr in "$pod_cidr" "$service_cidr"; do
    ip route replace unreachable "$cidr" metric 4000 ||
      die "could not add the safety route 'unreachable $cidr'"
  done
  network_check
}

# Fails unless pod and service addresses are routed to the bridge or refused: never the default route.
network_check() {
  local route
  route=$(ip route get 10.244.0.2 2>&1) || die "pod CIDR is not routable: $route"
  case "$route" in
    *"dev $bridge_name"*) ;;
    *) die "pod CIDR $pod_cidr is not routed to $bridge_name (ip route get 10.244.0.2: $route); refusing to start" ;;
  esac
  if route=$(ip route get 10.96.0.10 2>&1); then
    die "service CIDR $service_cidr is routed ($route); it must be unreachable from the host"
  fi
}

pid_alive() { [ -f "$run_dir/$1.pid" ] && kill -0 "$(cat "$run_dir/$1.pid")" 2>/dev/null; }

# Polls a command until it succeeds or the deadline passes; prints what it saw on timeout.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$(( $(date +%s) + timeout )) out
  until out=$("$@" 2>&1); do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      die "timed out after ${timeout}s waiting for $what; last output: $out"
    fi
    sleep 0.5
  done
}

admin_curl() {
  curl -sSf --max-time 5 --cacert "$pki_dir/ca.crt" --cert "$pki_dir/admin.crt" \
    --key "$pki_dir/admin.key" "$apiserver_url$1"
}

node_ready() {
  admin_curl /api/v1/nodes/testbed-node-0 | jq -e '.status.conditions[] | select(.type == "Ready" and .status == "True")' >/dev/null
}

# stop_component NAME [SIGNAL]: signal the process from its pid file, SIGKILL after 15 s.
stop_component() {
  local name=$1 signal=${2:-TERM} pidfile="$run_dir/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping $name (pid $pid)"
    kill "-$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# Debian packages the testbed needs, installed when missing.
ensure_packages() {
  local missing=() pair
  for pair in ip:iproute2 ss:iproute2 iptables:iptables openssl:openssl curl:curl jq:jq rg:ripgrep git:git; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  say "installing missing packages: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
    die "could not install ${missing[*]} with apt-get"
}
