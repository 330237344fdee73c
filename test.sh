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
print(f"{p} passed, {f} failed, {s} skipped")
PY
rm -f "$log"
exit "$rc"
