#!/usr/bin/env bash
# Hosted deployment on this machine, end to end through the CLI: a throwaway PostgreSQL, `daiko host
# init`, OWNERS owners with certificates from a throwaway CA, an openssl market requiring client
# certificates, TERMINALS terminals per owner, then for SECONDS each:
#   1. one `host serve` node, terminals connected to it directly;
#   2. three `host serve` nodes behind HAProxy (round robin);
#   3. the single-owner `home serve` (SQLite) with the same number of terminals.
# Each terminal runs `terminal get --mode relay` in a loop (delegated sessions, one full handshake of
# the owner's key with the market each); reported: sessions/s per setup and each node's resident
# memory. Every request is a CLI process, so the figures are the whole path's, terminal side included;
# compare the setups within one run only, and note the load average printed with them.
# Usage: bench/hosted.sh [OWNERS (default 4)] [TERMINALS per owner (default 2)] [SECONDS (default 20)]
set -euo pipefail
OWNERS=${1:-4}
TERMINALS=${2:-2}
SECONDS_EACH=${3:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DAIKO="dotnet $ROOT/src/Daiko.Cli/bin/Release/net10.0/daiko.dll"
WORK=$(mktemp -d /tmp/daiko-hosted-bench.XXXXXX)
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for t in "$WORK"/terminals/*; do [ -d "$t" ] && $DAIKO terminal lock --terminal "$t" >/dev/null 2>&1 || true; done
  [ -d "$WORK/pg" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 300); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

echo "building the CLI" >&2
dotnet build "$ROOT/src/Daiko.Cli" -c Release -v q -nologo >/dev/null

chmod 755 "$WORK"; mkdir -p "$WORK/pg" && chown postgres:postgres "$WORK/pg"
PGPORT=$(free_port)
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres --no-sync >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/log" -w -o "-p $PGPORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
echo "Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=postgres" > "$WORK/conn"

cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=Bench CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout market.key -out market.csr -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > ext
openssl x509 -req -in market.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out market.pem -days 2 -extfile ext 2>/dev/null
MARKET=$(free_port)
openssl s_server -www -quiet -accept "127.0.0.1:$MARKET" -cert market.pem -key market.key -Verify 1 -CAfile ca.pem >/dev/null 2>&1 &
PIDS+=($!); wait_port "$MARKET"

$DAIKO host init --site site --postgres-file conn >/dev/null
$DAIKO host trust add --site site --ca ca.pem >/dev/null
for o in $(seq 1 "$OWNERS"); do
  printf '1111\n2222\nadmin-code-1\n' | $DAIKO host owner add --site site --owner "o$o" --subject "CN=Owner $o" >/dev/null
  openssl x509 -req -in "site/owners/o$o.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "o$o.pem" -days 2 2>/dev/null
  echo 2222 | $DAIKO host cert import --site site --owner "o$o" --cert "o$o.pem" >/dev/null
done
printf '1111\n2222\nadmin-code-1\n' | $DAIKO home init --home home --subject "CN=Home Owner" >/dev/null
openssl x509 -req -in home/user.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out home.pem -days 2 2>/dev/null
echo 2222 | $DAIKO home cert import --home home --cert home.pem >/dev/null
$DAIKO home trust add --home home --ca ca.pem >/dev/null

# enroll_all KIND PORT: enrolls and unlocks OWNERS×TERMINALS terminals (hosted) or as many (home).
enroll_all() {
  local kind=$1 port=$2 n=0
  rm -rf "$WORK/terminals"; mkdir -p "$WORK/terminals"
  for o in $(seq 1 "$OWNERS"); do for t in $(seq 1 "$TERMINALS"); do
    n=$((n + 1)); local dir="$WORK/terminals/t$n" code
    if [ "$kind" = host ]; then
      code=$($DAIKO host device add --site site --owner "o$o" --name "$kind-t$n-$RANDOM" --markets '*,127.0.0.1' --max-tickets 1000 2>/dev/null)
    else
      code=$($DAIKO home device add --home home --name "$kind-t$n-$RANDOM" --markets '*,127.0.0.1' --max-tickets 1000 2>/dev/null)
    fi
    printf '432100\n' | $DAIKO terminal enroll --terminal "$dir" --home "127.0.0.1:$port" --code "$code" >/dev/null
    printf '432100\n1111\n2222\n' | $DAIKO terminal unlock --terminal "$dir" >/dev/null
  done; done
}

# load: every terminal fetches in a loop for SECONDS_EACH; prints sessions/s.
load() {
  local end=$(( $(date +%s) + SECONDS_EACH )) counts="$WORK/counts"
  local loops=()
  rm -f "$counts"
  for dir in "$WORK"/terminals/*; do
    ( ok=0; while [ "$(date +%s)" -lt "$end" ]; do
        $DAIKO terminal get "https://localhost:$MARKET/" --terminal "$dir" --mode relay >/dev/null 2>&1 && ok=$((ok + 1))
      done; echo "$ok" >> "$counts" ) &
    loops+=($!)
  done
  wait "${loops[@]}"
  awk -v s="$SECONDS_EACH" '{t += $1} END {printf "%.2f", t / s}' "$counts"
}

lock_all() { for t in "$WORK"/terminals/*; do $DAIKO terminal lock --terminal "$t" >/dev/null 2>&1 || true; done; }

report() { echo "$1: $2 delegated sessions/s; node memory (RSS): $3; load average $(cut -d' ' -f1-3 /proc/loadavg)"; }

# 1. one node
P1=$(free_port); $DAIKO host serve --site site --listen "127.0.0.1:$P1" >"$WORK/node1.log" 2>&1 & N1=$!; PIDS+=($N1); wait_port "$P1"
enroll_all host "$P1"; one=$(load); report "one node" "$one" "$(( $(rss_kb $N1) / 1024 )) MiB"; lock_all

# 2. three nodes behind HAProxy
P2=$(free_port); P3=$(free_port)
$DAIKO host serve --site site --listen "127.0.0.1:$P2" >"$WORK/node2.log" 2>&1 & N2=$!; PIDS+=($N2)
$DAIKO host serve --site site --listen "127.0.0.1:$P3" >"$WORK/node3.log" 2>&1 & N3=$!; PIDS+=($N3)
wait_port "$P2"; wait_port "$P3"
LB=$(free_port)
printf 'defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n  retries 3\n  option redispatch\nfrontend f\n  bind 127.0.0.1:%s\n  default_backend n\nbackend n\n  balance roundrobin\n  server a 127.0.0.1:%s check\n  server b 127.0.0.1:%s check\n  server c 127.0.0.1:%s check\n' "$LB" "$P1" "$P2" "$P3" > haproxy.cfg
haproxy -db -f haproxy.cfg >/dev/null 2>&1 & PIDS+=($!); wait_port "$LB"
enroll_all host "$LB"; three=$(load)
report "three nodes behind HAProxy" "$three" "$(( $(rss_kb $N1) / 1024 )), $(( $(rss_kb $N2) / 1024 )), $(( $(rss_kb $N3) / 1024 )) MiB"; lock_all

# 3. the single-owner home server on SQLite
PH=$(free_port); $DAIKO home serve --home home --listen "127.0.0.1:$PH" >"$WORK/home.log" 2>&1 & NH=$!; PIDS+=($NH); wait_port "$PH"
enroll_all home "$PH"; home=$(load); report "single-owner home server (SQLite)" "$home" "$(( $(rss_kb $NH) / 1024 )) MiB"; lock_all

awk -v a="$one" -v b="$three" -v c="$home" 'BEGIN {printf "ratios in this run: three nodes / one node %.2f; one node / home server %.2f\n", (a > 0 ? b / a : 0), (c > 0 ? a / c : 0)}'
echo "payments/s: not measured by this script (it runs no bank)"
