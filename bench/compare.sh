#!/usr/bin/env bash
# Compares two commits' benchmarks in one run, interleaved, and writes bench/results/redesign-compare.md.
#   bench/compare.sh [--before REV] [--after REV] [--rounds N] [--runs N] [--out FILE] [--keep]
# Each commit is checked out in its own git worktree under /tmp and built there (Release). Then the
# benchmarks both commits have (terminal-cost with --runs N per way, home-throughput) run
# before, after, before, after, ... for N rounds (default 3), so both sides see the same machine: the
# ratio after/before of the medians over the rounds is what the report gives, with the load average
# read before and after every run. --keep leaves the worktrees (and their builds) for a rerun.
#
# The default "before" is dc275ce, the last commit before the redesign: the typed control protocol
# (Daiko.Protocol), the split home card, Daiko.Money and the async home store all branch off it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
before="dc275ce"
after="main"
rounds=3
runs=7
out="$root/bench/results/redesign-compare.md"
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --before) before="$2"; shift 2 ;;
    --after) after="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "bench/compare.sh: unknown option '$1' (see the comment at the top of the script)" >&2; exit 2 ;;
  esac
done
before_commit="$(git -C "$root" rev-parse --verify "$before^{commit}")"
after_commit="$(git -C "$root" rev-parse --verify "$after^{commit}")"
work="/tmp/daiko-compare"
data="$work/data-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$data"
"$root/scripts/install-deps.sh"

checkout() { # side commit -> prints the worktree path
  local dir="$work/$1-${2:0:12}"
  if [ ! -d "$dir" ]; then
    git -C "$root" worktree add --detach "$dir" "$2" >&2
  fi
  echo "$dir"
}
before_dir="$(checkout before "$before_commit")"
after_dir="$(checkout after "$after_commit")"
cleanup() {
  if [ "$keep" = 0 ]; then
    git -C "$root" worktree remove --force "$before_dir" 2>/dev/null || true
    git -C "$root" worktree remove --force "$after_dir" 2>/dev/null || true
  fi
}
trap cleanup EXIT

for dir in "$before_dir" "$after_dir"; do
  echo "building $dir" >&2
  dotnet build "$dir/bench/Daiko.Bench" -c Release -v quiet -nologo >&2
done

{
  echo "before $before_commit $(git -C "$root" log -1 --format='%ad %s' --date=iso "$before_commit" | cut -c1-120)"
  echo "after $after_commit $(git -C "$root" log -1 --format='%ad %s' --date=iso "$after_commit" | cut -c1-120)"
  echo "rounds $rounds"
  echo "runs $runs"
  echo "cores $(nproc)"
} > "$data/meta.txt"

run_side() { # side dir round
  local side="$1" dir="$2" round="$3"
  local dest="$data/$side-$round"
  mkdir -p "$dest"
  local bench="$dir/bench/Daiko.Bench/bin/Release/net10.0/Daiko.Bench.dll"
  echo "round $round $side: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  cut -d' ' -f1-3 /proc/loadavg > "$dest/load-start.txt"
  local start=$SECONDS
  (cd "$dir" && dotnet "$bench" terminal-cost --runs "$runs" --out "$dest") > "$dest/terminal-cost.log" 2>&1 || echo "terminal-cost exit $?" >> "$dest/failures.txt"
  (cd "$dir" && dotnet "$bench" home-throughput --out "$dest") > "$dest/home-throughput.log" 2>&1 || echo "home-throughput exit $?" >> "$dest/failures.txt"
  cut -d' ' -f1-3 /proc/loadavg > "$dest/load-end.txt"
  echo $((SECONDS - start)) > "$dest/seconds.txt"
}

for round in $(seq 1 "$rounds"); do
  run_side before "$before_dir" "$round"
  run_side after "$after_dir" "$round"
done

python3 "$root/bench/compare-report.py" "$data" > "$out"
echo "wrote $out (raw data in $data)" >&2
