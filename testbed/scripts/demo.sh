#!/usr/bin/env bash
# The demo, as far as kubeoc goes so far: the testbed up, a namespace, and a ConfigMap holding
# what the plugin can do, read back through the real apiserver.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

plugin="$repo_root/target/release/kubectl-kubeoc"
[ -x "$plugin" ] || die "no $plugin (run: make build)"
export KUBECONFIG="$kubeconfig"

say "kubectl kubeoc version"
"$plugin" version
kubectl create namespace kubeoc-demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
"$plugin" --help >"$state_dir/plugin-help.txt"
kubectl -n kubeoc-demo create configmap kubeoc-help --from-file=help="$state_dir/plugin-help.txt" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
say "ConfigMap kubeoc-demo/kubeoc-help holds the plugin's help:"
kubectl -n kubeoc-demo get configmap kubeoc-help -o jsonpath='{.data.help}'
echo
kubectl get namespaces
cat <<MSG

Next: point kubectl at the testbed with
  export KUBECONFIG=$kubeconfig
MSG
