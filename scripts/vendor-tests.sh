#!/usr/bin/env bash
# Runs the unit tests of the vendored, patched crates (vendor/README.md),
# as patched and together, the way Zync builds them.
#
# The vendored manifests keep no dev-dependencies, and the crates sit
# outside the workspace, so this assembles a throwaway workspace under the
# target directory: each crate's manifest plus the dev-dependencies its
# unit tests use, its `src` linked to the vendored one, and the same
# `[patch.crates-io]` as the root manifest. Nothing is written in the tree.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zync-target}"
work="$CARGO_TARGET_DIR/vendor-tests"
crates=(str0m str0m-aws-lc-rs is dimpl tungstenite)

# What each crate's unit tests use beyond its dependencies (the upstream
# manifests' dev-dependencies, trimmed to those).
dev_dependencies() {
  case "$1" in
    str0m) printf '%s\n' 'serde_json = "1"' 'systemstat = "0.2"' \
      'tracing-subscriber = { version = "0.3", features = ["fmt"] }' ;;
    is) printf '%s\n' 'serde_json = "1"' \
      'tracing-subscriber = { version = "0.3", features = ["env-filter", "std"] }' ;;
    dimpl) echo 'x509-parser = "0.18"' ;;
    tungstenite) echo 'env_logger = "0.11"' ;;
    *) ;;
  esac
}

mkdir -p "$work"
{
  echo '[workspace]'
  echo 'resolver = "2"'
  printf 'members = [%s]\n' "$(printf '"%s",' "${crates[@]}" | sed 's/,$//')"
  echo
  echo '[patch.crates-io]'
  for crate in "${crates[@]}"; do
    echo "$crate = { path = \"$crate\" }"
  done
} > "$work/Cargo.toml"
for crate in "${crates[@]}"; do
  mkdir -p "$work/$crate"
  ln -sfn "$root/vendor/$crate/src" "$work/$crate/src"
  {
    cat "$root/vendor/$crate/Cargo.toml"
    echo
    echo '[dev-dependencies]'
    dev_dependencies "$crate"
  } > "$work/$crate/Cargo.toml"
done

# The versions last tested (the crates' own lockfile; cargo updates it in
# the work directory if a manifest changed).
cp "$root/vendor/vendor-tests.Cargo.lock" "$work/Cargo.lock"

cd "$work"
cargo test --workspace --lib --no-fail-fast "$@"
