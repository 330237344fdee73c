#!/usr/bin/env bash
# Runs every test of Daiko: installs Debian packages it needs, restores NuGet packages, builds, tests.
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
scripts/install-deps.sh
dotnet restore Daiko.slnx
dotnet build Daiko.slnx -c Release --no-restore -v quiet -nologo
log=$(mktemp)
set +e
dotnet test Daiko.slnx -c Release --no-build --nologo -v quiet --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line for the whole run, summed over the test projects.
python3 - "$log" <<'PY'
import re, sys
p = f = s = 0
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"\s*(Passed|Failed|Skipped):\s*(\d+)\s*$", line)
    if m:
        n = int(m[2])
        if m[1] == "Passed": p += n
        elif m[1] == "Failed": f += n
        else: s += n
# Each failed test again at the end, with the start of its message, so the tail of the log names it.
failed, grab = [], 0
for line in open(sys.argv[1], errors="replace"):
    if re.match(r"\s*Failed Daiko\.\S.* \[[^\]]+\]\s*$", line):
        failed.append(line.rstrip()); grab = 12
    elif grab:
        if re.match(r"\s*(Passed|Skipped) \S", line): grab = 0; continue
        failed.append("    " + line.rstrip()[:300]); grab -= 1
if failed:
    print("Failed tests:")
    print("\n".join(failed))
print(f"{p} passed, {f} failed, {s} skipped")
PY
rm -f "$log"
exit "$rc"
