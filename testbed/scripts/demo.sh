#!/usr/bin/env bash
# The demo: the testbed up, kubeoc installed, the controller running in-process, the example
# team-agent Ready with a real OpenCode server, a Task run to completion on it with its answer
# streamed, and the chat terminal's attach command to type next.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

plugin="$repo_root/target/release/kubectl-kubeoc"
[ -x "$plugin" ] || die "no $plugin (run: make build)"
export KUBECONFIG="$kubeconfig"
ns=kubeopencode-system

say "kubectl kubeoc version"
"$plugin" version

say "kubectl kubeoc install"
"$plugin" install

# The controller keeps running after the demo (make cluster-down stops it).
if pid_alive kubeoc-controller && [ "$plugin" -nt "$run_dir/kubeoc-controller.pid" ]; then
  stop_component kubeoc-controller INT
fi
if ! pid_alive kubeoc-controller; then
  say "starting kubectl kubeoc controller run (log: .testbed/logs/kubeoc-controller.log)"
  setsid "$plugin" controller run >>"$log_dir/kubeoc-controller.log" 2>&1 </dev/null &
  echo $! >"$run_dir/kubeoc-controller.pid"
fi

# The example Agent needs its credential Secret and a Git repository: a local one stands in
# for the example's placeholder (owned by the pods' uid, as git requires).
kubectl -n "$ns" create secret generic ai-credentials --from-literal=api-key=demo-not-a-real-key \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# Outside the clone: pods reach it wherever the clone lives (see git_repos_dir in testbed/src/lib.rs).
repo=/var/lib/kubeoc-testbed/git/team-repo
if [ ! -d "$repo/.git" ]; then
  mkdir -p "$repo"
  git -C "$repo" init -q -b main
  printf '# team repo\n\nThe code the team-agent works on.\n' >"$repo/README.md"
  git -C "$repo" add . && git -C "$repo" -c user.email=demo@kubeoc.dev -c user.name=demo commit -qm init
  chown -R 1000:1000 "$repo"
fi
say "applying the example team-agent (examples/team-agent.yaml, repository -> $repo)"
sed "s#https://github.com/your-org/your-repo.git#file://$repo#" "$repo_root/examples/team-agent.yaml" |
  kubectl -n "$ns" apply -f - >/dev/null
# The testbed's only model is the stub on the bridge: give the Agent an inline opencode.json.
kubectl -n "$ns" patch agent team-agent --type merge -p "{\"spec\":{\"config\":{
  \"provider\":{\"stub\":{\"npm\":\"@ai-sdk/openai-compatible\",
  \"options\":{\"baseURL\":\"http://$model_addr/v1\",\"apiKey\":\"x\"},\"models\":{\"stub-model\":{}}}},
  \"model\":\"stub/stub-model\"}}}" >/dev/null

start=$(date +%s)
say "waiting for team-agent to be Ready (Deployment available and /global/health answered)"
"$plugin" -n "$ns" agent wait team-agent --for=ready --timeout=240s >/dev/null
say "team-agent Ready in $(( $(date +%s) - start ))s"
"$plugin" agent list -n "$ns" -o wide
kubectl -n "$ns" get agent team-agent -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.message}){"\n"}{end}'

# A Task on the live server, as automation submits one: queued, admitted, run by a pod with
# `opencode run --attach`, its answer streamed from the session's events through the apiserver's
# service proxy while the agent writes it. (The testbed's stub model answers what [[reply:...]]
# asks for, [[slow:MS]] apart per word.)
say "kubectl kubeoc task submit --agent team-agent --wait --follow ... (the answer, streamed):"
start=$(date +%s)
"$plugin" -n "$ns" task submit --agent team-agent --wait --follow \
  "Summarize code/README.md in one sentence. [[reply:The team repo holds the code the team-agent works on, and this answer came from its live OpenCode server.]] [[slow:60]]"
say "Task Completed in $(( $(date +%s) - start ))s"
"$plugin" -n "$ns" task list

cat <<MSG

Next (kubectl finds the plugin on PATH as kubectl-kubeoc):
  export KUBECONFIG=$kubeconfig PATH=$repo_root/target/release:\$PATH
  kubectl kubeoc agent list -A -o wide
  kubectl kubeoc agent describe team-agent -n $ns
  kubectl kubeoc agent logs team-agent -n $ns
  curl -s http://127.0.0.1:8080/metrics | grep ^kubeoc_   # the controller's metrics
  kubectl kubeoc agent attach team-agent -n $ns     # the chat terminal (? shows the keys)
  kubectl kubeoc agent attach team-agent -n $ns --prompt "What is in code/README.md?"
  kubectl kubeoc task submit --agent team-agent -n $ns --wait --follow "Fix the failing test"
  kubectl kubeoc task list -n $ns -o wide
MSG
