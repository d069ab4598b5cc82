#!/usr/bin/env bash
# Fuzzes Zync's inputs: each target in fuzz/fuzz_targets runs for a set
# time under libFuzzer (cargo-fuzz, on a nightly toolchain, with
# AddressSanitizer), starting from fuzz/seeds and the corpus earlier runs
# kept in fuzz/corpus. Prints executions, coverage and corpus size per
# target; exits non-zero if any target found a crash (its input is then in
# fuzz/artifacts/<target>/: reproduce it with
# `cargo +nightly fuzz run <target> <file>`, fix it, and keep the input as a
# regression test next to the code it broke).
#
# Usage: scripts/fuzz.sh [--minutes N | --seconds N] [--jobs J] [target ...]
#   --minutes N  time per target (default 10)
#   --seconds N  the same in seconds (a quick check that the targets run)
#   --jobs J     targets run at once (default 1; each uses one core)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=600
jobs=1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) seconds=$(($2 * 60)); shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

if [ "$seconds" -le 0 ]; then
  echo "the time per target must be positive" >&2
  exit 2
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh needs a nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# Outside the clone, like the main build's (scripts/test.sh).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zync-fuzz-target}"

if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
echo "building ${targets[*]}…"
cargo +nightly fuzz build -O

mkdir -p fuzz/logs
run_one() {
  local target="$1" dict=()
  [ -f "fuzz/dicts/$target.dict" ] && dict=("-dict=fuzz/dicts/$target.dict")
  mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target"
  cargo +nightly fuzz run -O "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 \
    "${dict[@]}" > "fuzz/logs/$target.log" 2>&1
}

failed=()
pids=()
names=()
for target in "${targets[@]}"; do
  run_one "$target" &
  pids+=($!)
  names+=("$target")
  if [ ${#pids[@]} -ge "$jobs" ]; then
    wait "${pids[0]}" || failed+=("${names[0]}")
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${names[$i]}")
done

printf '%-16s %14s %10s %10s %8s\n' target executions exec/s coverage corpus
for target in "${targets[@]}"; do
  log="fuzz/logs/$target.log"
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  rate='?'
  [ "$execs" != '?' ] && rate=$((execs / seconds))
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo '?')
  corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
  printf '%-16s %14s %10s %10s %8s\n' "$target" "$execs" "$rate" "$cov" "$corpus"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]} (see fuzz/logs/ and fuzz/artifacts/)" >&2
  exit 1
fi
