#!/usr/bin/env bash
# Runs one time-boxed coverage-guided fuzzing campaign of a Daiko parser (or of each, in turn):
#   fuzz/run.sh TARGET SECONDS      (targets: fuzz/run.sh list; dotnet run --project fuzz/Daiko.Fuzz -- list describes them)
#   fuzz/run.sh all SECONDS
#   fuzz/run.sh totals              (per-target sums of fuzz/results.md, as a Markdown table)
# The harness (fuzz/Daiko.Fuzz) is published outside the tree, the harness, the product's assemblies and the
# CBOR and COSE readers are instrumented with SharpFuzz (the harness too, so that every input reaches
# instrumented code even where only the base library's readers run, as for PKCS#12), and Debian's afl-fuzz drives SharpFuzz's persistent
# out-of-process loop under nice -n 19. Afterwards the corpus and the campaign's new inputs are
# minimised with afl-cmin into fuzz/corpus/TARGET/ (inputs over 32 KiB are left out; seed-* keep their
# names, finding-* inputs that once found a bug are always kept), a row is added to
# fuzz/results.md, and any crash or hang is copied to fuzz/findings/TARGET/.
# Environment: DAIKO_FUZZ_WORK (build and afl output; default fuzz/.work, not under /tmp, which afl-cmin refuses), DAIKO_FUZZ_PREBUILT=1
# (reuse the instrumented build there, e.g. for campaigns run side by side), DAIKO_FUZZ_TIMEOUT_MS (5000).
set -euo pipefail
cd "$(dirname "$0")"
fuzz_dir=$(pwd)
work=${DAIKO_FUZZ_WORK:-$fuzz_dir/.work}
timeout_ms=${DAIKO_FUZZ_TIMEOUT_MS:-5000}
max_input=32768
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1

usage() { echo "usage: fuzz/run.sh TARGET|all|list|totals SECONDS" >&2; exit 2; }
[ $# -ge 1 ] || usage
if [ "$1" = totals ]; then
  awk -F'|' '/^\| 20/ { t = $3; gsub(/ /, "", t); runs[t]++; secs[t] += $4; ex[t] += $5; split($7, e, " "); if (e[1] + 0 > edges[t]) edges[t] = e[1] + 0; cr[t] += $9; hg[t] += $10; if (!(t in order)) { order[t] = ++n; name[n] = t } }
    END { print "| target | campaigns | seconds | executions | most edges | crashes | hangs |"; print "| --- | ---: | ---: | ---: | ---: | ---: | ---: |";
      for (i = 1; i <= n; i++) { t = name[i]; printf "| %s | %d | %d | %d | %d | %d | %d |\n", t, runs[t], secs[t], ex[t], edges[t], cr[t], hg[t]; a += secs[t]; b += ex[t]; c += cr[t]; d += hg[t]; r += runs[t] }
      printf "| **all** | %d | %d | %d | | %d | %d |\n", r, a, b, c, d }' results.md
  exit 0
fi
command -v afl-fuzz >/dev/null || { echo "afl-fuzz is missing: scripts/install-deps.sh installs Debian's afl++" >&2; exit 1; }
mkdir -p "$work"

build() {
  # SharpFuzz rewrites assemblies in place: always instrument a fresh publish, never the normal build output.
  rm -rf "$work/bin"
  dotnet tool restore >/dev/null
  nice -n 19 dotnet publish Daiko.Fuzz/Daiko.Fuzz.csproj -c Release -o "$work/bin" -v quiet -nologo >/dev/null
  # The target names, asked before the harness is instrumented (instrumented code runs only under afl).
  dotnet "$work/bin/Daiko.Fuzz.dll" list | cut -f1 > "$work/bin/.targets"
  # Of the harness, its targets only (namespace Daiko.Fuzz): its entry point runs before afl's map exists.
  dotnet tool run sharpfuzz "$work/bin/Daiko.Fuzz.dll" Daiko.Fuzz
  for assembly in Daiko.Tls Daiko.Protocol Daiko.Money Daiko.Home System.Formats.Cbor System.Security.Cryptography.Cose; do
    dotnet tool run sharpfuzz "$work/bin/$assembly.dll"
  done
  touch "$work/bin/.instrumented"
}

if [ "${DAIKO_FUZZ_PREBUILT:-0}" != 1 ] || [ ! -f "$work/bin/.instrumented" ]; then
  exec 9>"$work/build.lock"
  flock 9
  build
  flock -u 9
fi
harness=("$(command -v dotnet)" "$work/bin/Daiko.Fuzz.dll")
if [ "$1" = list ]; then cat "$work/bin/.targets"; exit 0; fi
[ $# -eq 2 ] || usage
seconds=$2
mapfile -t targets < "$work/bin/.targets"

stat_of() { awk -v k="$1" -F' *: *' '$1 == k { print $2 }' "$2"; }

campaign() {
  local target=$1 out="$work/out/$1" corpus="$fuzz_dir/corpus/$1"
  [ -d "$corpus" ] && [ -n "$(ls -A "$corpus")" ] || { echo "no corpus in $corpus" >&2; return 1; }
  rm -rf "$out"; mkdir -p "$work/out"
  echo "fuzzing $target for $seconds s" >&2
  nice -n 19 afl-fuzz -i "$corpus" -o "$out" -t "$timeout_ms" -m none -V "$seconds" -- "${harness[@]}" run "$target" >"$work/$target.log" 2>&1 || {
    echo "afl-fuzz failed; the end of its log:" >&2; tail -20 "$work/$target.log" >&2; return 1; }
  local stats="$out/default/fuzzer_stats"
  local execs edges cvg crashes hangs rate
  execs=$(stat_of execs_done "$stats"); edges=$(stat_of edges_found "$stats"); cvg=$(stat_of bitmap_cvg "$stats")
  crashes=$(stat_of saved_crashes "$stats"); hangs=$(stat_of saved_hangs "$stats")
  rate=$(( execs / (seconds > 0 ? seconds : 1) ))

  # Keep what was found: the old corpus and the new queue, minimised together, under the size cap.
  local pool="$work/pool/$target" min="$work/min/$target"
  rm -rf "$pool" "$min"; mkdir -p "$pool"
  find "$corpus" "$out/default/queue" -maxdepth 1 -type f -size -$((max_input + 1))c -exec cp {} "$pool/" \;
  nice -n 19 afl-cmin -i "$pool" -o "$min" -t "$timeout_ms" -m none -- "${harness[@]}" run "$target" >"$work/$target.cmin.log" 2>&1 || {
    echo "afl-cmin failed; the corpus is left as it was:" >&2; tail -5 "$work/$target.cmin.log" >&2; min=""; }
  if [ -n "$min" ] && [ -n "$(ls -A "$min")" ]; then
    local next="$work/next/$target"
    rm -rf "$next"; mkdir -p "$next"
    for f in "$min"/*; do
      name=$(basename "$f")
      case "$name" in seed-*|finding-*) cp "$f" "$next/$name" ;; *) cp "$f" "$next/$(sha1sum "$f" | cut -c1-16)" ;; esac
    done
    # Inputs that once found a bug stay, whatever their coverage now.
    find "$corpus" -maxdepth 1 -type f -name 'finding-*' -exec cp {} "$next/" \;
    rm -rf "$corpus"; mkdir -p "$corpus"; cp "$next"/* "$corpus/"
  fi
  if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
    mkdir -p "findings/$target"
    find "$out/default/crashes" "$out/default/hangs" -type f -name 'id:*' -exec cp {} "findings/$target/" \;
    echo "$target: $crashes crashes and $hangs hangs, copied to fuzz/findings/$target/" >&2
  fi
  local size
  size=$(find "$corpus" -type f | wc -l)
  (
    flock 8
    [ -f results.md ] || printf '%s\n' "# Fuzzing campaigns" "" \
      "One row per campaign of \`fuzz/run.sh\` (afl-fuzz $(afl-fuzz -h 2>&1 | grep -o '++[0-9.a-z]*' | head -1) driving the SharpFuzz-instrumented harness; edges are afl's map of the instrumented assemblies)." "" \
      "| date (UTC) | target | seconds | executions | exec/s | edges (map) | corpus | crashes | hangs |" \
      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" > results.md
    echo "| $(date -u +%Y-%m-%dT%H:%MZ) | $target | $seconds | $execs | $rate | $edges ($cvg) | $size | $crashes | $hangs |" >> results.md
  ) 8>"$work/results.lock"
  echo "$target: $execs executions, $edges edges ($cvg), corpus $size, $crashes crashes, $hangs hangs" >&2
}

if [ "$1" = all ]; then
  for t in "${targets[@]}"; do campaign "$t"; done
else
  printf '%s\n' "${targets[@]}" | grep -qx "$1" || { echo "unknown target '$1' (targets: ${targets[*]})" >&2; exit 2; }
  campaign "$1"
fi
