#!/usr/bin/env bash
# Installs what Daiko's build, tests and demo need on Debian: the .NET SDK is expected on PATH;
# everything else (PKCS#11 token, TLS peers, SMTP server, PostgreSQL, HAProxy for the PROXY protocol test, afl++ for fuzz/run.sh, chromium
# for the console's browser tests) comes from Debian packages.
set -euo pipefail
packages=(softhsm2 opensc openssl gnutls-bin nginx-light python3-aiosmtpd postgresql procps socat iproute2 util-linux haproxy afl++ chromium fonts-dejavu-core)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
command -v dotnet >/dev/null || { echo "the .NET 10 SDK (dotnet) must be on PATH" >&2; exit 1; }
