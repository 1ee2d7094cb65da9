#!/usr/bin/env bash
# make dist: the release archive of kubectl-kubeoc for this machine's platform (on Linux a
# static musl binary that runs on any distribution of that architecture), and its version and
# sha256 written into plugin.yaml and krew-manifest.yaml.
#
#   KUBEOC_DIST_BINARY=<file>  package this binary instead of building one (the tests)
#   KUBEOC_DIST_DIR=<dir>      write the archive and both manifests there, not dist/ and the root
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
say() { printf '[dist %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

version=v$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)
[[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]] || { say "cannot read the version from Cargo.toml (got $version)"; exit 1; }
os=$(uname -s | tr '[:upper:]' '[:lower:]')
case $(uname -m) in
  x86_64 | amd64) arch=amd64 rust_arch=x86_64 ;;
  aarch64 | arm64) arch=arm64 rust_arch=aarch64 ;;
  *) say "unsupported machine $(uname -m): krew platforms are amd64 and arm64"; exit 1 ;;
esac
case $os in linux | darwin) ;; *) say "unsupported OS $os: krew platforms are linux and darwin"; exit 1 ;; esac

out=${KUBEOC_DIST_DIR:-$root/dist}
manifests=${KUBEOC_DIST_DIR:-$root}
mkdir -p "$out"

binary=${KUBEOC_DIST_BINARY:-}
if [[ -z $binary ]]; then
  if [[ $os == linux ]]; then
    target=$rust_arch-unknown-linux-musl
    # ring and oniguruma compile C for the target: musl's gcc wrapper.
    command -v musl-gcc >/dev/null || { say "musl-gcc not found: install musl-tools (apt-get install musl-tools)"; exit 1; }
    if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
      say "adding the Rust target $target (rustup target add)"
      rustup target add "$target"
    fi
    started=$SECONDS
    say "building kubectl-kubeoc $version for $target (release; a cold build takes several minutes)"
    cargo build --release --locked --target "$target" --bin kubectl-kubeoc
    binary=$root/target/$target/release/kubectl-kubeoc
    say "built in $((SECONDS - started)) s"
  else
    # macOS binaries link libSystem dynamically, as every macOS program does.
    cargo build --release --locked --bin kubectl-kubeoc
    binary=$root/target/release/kubectl-kubeoc
  fi
fi
[[ -x $binary ]] || { say "no executable at $binary"; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$binary" "$stage/kubectl-kubeoc"
# Symbols and debug info are of no use to a user and make most of a debug build's size.
if command -v strip >/dev/null; then strip "$stage/kubectl-kubeoc" 2>/dev/null || true; fi
cp "$root/completions/kubectl_complete-kubeoc" "$root/LICENSE" "$stage/"
chmod 0755 "$stage/kubectl-kubeoc" "$stage/kubectl_complete-kubeoc"
chmod 0644 "$stage/LICENSE"

archive=$out/kubeoc_${version}_${os}_${arch}.tar.gz
files=(kubectl-kubeoc kubectl_complete-kubeoc LICENSE)
if tar --version 2>/dev/null | grep -q GNU; then
  # The same inputs give the same archive: fixed order, owners and times.
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -cf - "${files[@]}" | gzip -9n >"$archive"
else
  tar -C "$stage" -cf - "${files[@]}" | gzip -9n >"$archive"
fi
if command -v sha256sum >/dev/null; then
  sha=$(sha256sum "$archive" | cut -d' ' -f1)
else
  sha=$(shasum -a 256 "$archive" | cut -d' ' -f1)
fi

# plugin.yaml is the source of both manifests: its version and URIs follow Cargo.toml, and
# this platform's sha256 becomes the archive's. (Quoted: an all-digit sum is a string.) A
# platform whose archive was never built here keeps the all-zero sum.
updated=$(awk -v version="$version" -v os="$os" -v arch="$arch" -v sha="$sha" '
  /^  - selector:/ { p_os = ""; p_arch = "" }
  /^        os: / { p_os = $2 }
  /^        arch: / { p_arch = $2 }
  /^  version: / { print "  version: " version; next }
  /^    uri: / { gsub(/v[0-9]+\.[0-9]+\.[0-9]+[^\/_]*/, version); print; next }
  /^    sha256: / && p_os == os && p_arch == arch { print "    sha256: \"" sha "\""; next }
  { print }
' "$root/plugin.yaml")
printf '%s\n' "$updated" >"$manifests/plugin.yaml"
{
  echo "# kubeoc's manifest for krew-index (plugins/kubeoc.yaml); written by make dist from plugin.yaml."
  printf '%s\n' "$updated" | sed '/^#/d'
} >"$manifests/krew-manifest.yaml"

size=$(wc -c <"$archive" | tr -d ' ')
say "archive $archive: $((size / 1024 / 1024)) MiB ($size bytes), sha256 $sha"
say "wrote $os/$arch's sha256 and version $version into $manifests/plugin.yaml and krew-manifest.yaml"
echo "$archive"
