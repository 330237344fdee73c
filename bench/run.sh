#!/usr/bin/env bash
# Runs Daiko's benchmarks and writes results to bench/results/.
#   bench/run.sh            full terminal-cost and home-throughput runs
#   bench/run.sh --quick    a short run (what the test suite runs so the benchmark cannot rot)
#   bench/run.sh micro      BenchmarkDotNet micro-benchmarks (record layer, key schedule)
#   bench/run.sh flood      1,000 hostile connections against a real home server (flood.md)
#   bench/run.sh load [--quick]   K = 1, 10, 100, 200 terminals at once against a real home server
#                           (quick: K = 1 and 10, a few seconds a row): load.md, load.json, load.svg
#                           (before the rows, not measured: each mode once a terminal, then every measured path
#                            --warm-up-seconds N at K = 10, 3 by default, 1 with --quick, 0 to skip)
#   bench/run.sh load --only handoff --terminals 10,10,10   one mode alone, a row per K listed, printed only
#                           (--home-env NAME=VALUE a variable for the home server only, as for soak;
#                            --market-psk-ke: nginx allows psk_ke and the terminals use --kex auto)
#                           (a steady run to profile the home server under: bench/results/profile.md;
#                            --alloc-types adds what the home server allocates, by type;
#                            --only openssl: the concurrent s_time peer alone, nginx counting its rate;
#                            --only alternating: handoff, s_time and resume-miss-handout in alternating slices,
#                            3 rounds of --seconds each, as the full run ends each K with)
#   bench/run.sh soak [--quick]   200 terminals x 50 mixed sessions with payments (quick: 10 x 5): soak.md, soak.json
#                           (--sessions N a longer run, --warm-up N sessions a terminal first (default 25), --home-env NAME=VALUE
#                           a variable for the home server only, e.g. a GC setting to compare)
#   bench/run.sh hosted [--quick] one `host serve` node, three behind HAProxy (PostgreSQL) and the SQLite home
#                           server, same run, same terminal count: sessions/s, payments/s, memory, CPU an operation
#                           (quick: 2 owners x 2 terminals, 2 s windows): hosted.md, hosted.json
#   (a full run also measures offline PIN guessing against an access-card key file: access-card-kdf.md,
#    and one payment's cost as the purse's log grows: purse-ops.md)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh"
dotnet build "$root/bench/Daiko.Bench" -c Release -v quiet -nologo >&2
bench="dotnet $root/bench/Daiko.Bench/bin/Release/net10.0/Daiko.Bench.dll"
if [ "${1:-}" = "micro" ]; then
  shift
  cd "$root/bench/results" && $bench --filter "*" "$@" && cp BenchmarkDotNet.Artifacts/results/*RecordLayerBenchmarks-report-github.md micro-record-layer.md
  exit 0
fi
if [ "${1:-}" = "flood" ]; then
  shift
  cd "$root/bench/results" && exec $bench flood --out "$root/bench/results" "$@"
fi
if [ "${1:-}" = "load" ]; then
  shift
  cd "$root/bench/results" && exec $bench load --out "$root/bench/results" "$@"
fi
if [ "${1:-}" = "hosted" ]; then
  shift
  cd "$root/bench/results" && exec $bench hosted --out "$root/bench/results" "$@"
fi
if [ "${1:-}" = "soak" ]; then
  shift
  cd "$root/bench/results" && exec $bench load --soak --out "$root/bench/results" "$@"
fi
$bench terminal-cost "$@"
$bench home-throughput "$@"
if [ "${1:-}" != "--quick" ]; then
  $bench access-card-kdf > "$root/bench/results/access-card-kdf.md"
  { $bench purse-ops; echo; $bench purse-group; } > "$root/bench/results/purse-ops.md"
fi
