#!/usr/bin/env bash
# The demo, as far as kubeoc goes so far: the testbed up, the plugin talking to it, and a real
# OpenCode server on the testbed answering a prompt, reached through the apiserver service proxy.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

plugin="$repo_root/target/release/kubectl-kubeoc"
[ -x "$plugin" ] || die "no $plugin (run: make build)"
export KUBECONFIG="$kubeconfig"
ns=kubeoc-demo

say "kubectl kubeoc version"
"$plugin" version

kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# A fresh run each time: the one-shot client pod cannot be updated in place.
kubectl -n "$ns" delete pod asker --ignore-not-found --wait=true >/dev/null
manifest="$testbed_root/manifests/opencode-server.yaml"
say "applying the OpenCode server from testbed/manifests/opencode-server.yaml"
kubectl -n "$ns" apply -f "$manifest" -l 'kubeoc.dev/role!=client' >/dev/null
start=$(date +%s)
kubectl -n "$ns" rollout status deployment/oc-server --timeout=180s
say "OpenCode server available in $(( $(date +%s) - start ))s"

password=$(kubectl -n "$ns" get secret server-auth -o jsonpath='{.data.password}' | base64 -d)
token=$(printf 'opencode:%s' "$password" | base64 -w0 | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g')
proxy="/api/v1/namespaces/$ns/services/oc:http/proxy"
say "health through the apiserver service proxy: GET $proxy/global/health"
kubectl get --raw "$proxy/global/health?auth_token=$token"
echo

say "a client pod asks the server by its Service name (opencode run --attach)"
kubectl -n "$ns" apply -f "$manifest" -l kubeoc.dev/role=client >/dev/null
kubectl -n "$ns" wait pod/asker --for=jsonpath='{.status.phase}'=Succeeded --timeout=180s >/dev/null
session=$(kubectl get --raw "$proxy/session?directory=/workspace&auth_token=$token" |
  jq -r '[.[] | select(.title == "testbed-ask")][0].id')
say "the answer, read through the service proxy from session $session:"
kubectl get --raw "$proxy/session/$session/message?directory=/workspace&auth_token=$token" |
  jq -r '[.[] | select(.info.role == "assistant") | .parts[] | select(.type == "text") | .text] | join("")'

cat <<MSG

Next: point kubectl at the testbed with
  export KUBECONFIG=$kubeconfig
  kubectl -n $ns get pods -o wide
MSG
