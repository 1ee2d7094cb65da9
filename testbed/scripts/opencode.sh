#!/usr/bin/env bash
# Makes sure the pinned OpenCode (testbed/opencode/package.json) is installed and prints the
# path of its binary on stdout (the only stdout line; progress goes to stderr).
#   opencode_bin=$(testbed/scripts/opencode.sh)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dir="$testbed_root/opencode"
bin="$dir/node_modules/opencode-ai/bin/opencode.exe"
want=$(node -p 'require(process.argv[1]).dependencies["opencode-ai"]' "$dir/package.json" 2>/dev/null) ||
  die "cannot read the pinned opencode-ai version from $dir/package.json (is node installed?)"

installed() {
  [ -x "$bin" ] && [ "$(node -p 'require(process.argv[1]).version' \
    "$dir/node_modules/opencode-ai/package.json" 2>/dev/null)" = "$want" ]
}

if ! installed; then
  command -v npm >/dev/null || die "npm is missing: install Node.js (npm) to fetch opencode-ai@$want"
  say "installing opencode-ai@$want with npm ci in $dir (about 185 MB, once)"
  start=$(date +%s)
  (cd "$dir" && npm ci --no-audit --no-fund >&2) || die "npm ci failed in $dir"
  say "npm ci done in $(( $(date +%s) - start ))s"
  installed || die "npm ci ran but $bin is missing or not $want (did the opencode-ai postinstall run?)"
fi

command -v rg >/dev/null ||
  say "warning: rg (apt package ripgrep) is not on PATH; OpenCode would try to download it"

echo "$bin"
