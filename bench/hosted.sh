#!/usr/bin/env bash
# The hosted deployment's benchmark, in process: `bench/run.sh hosted` (bench/Daiko.Bench/Hosted). One
# `host serve` node, three behind HAProxy over one PostgreSQL, and the single-owner SQLite home server,
# same run, same number of terminals: delegated sessions/s and payments/s, latency, errors, each
# server's memory and CPU an operation (bench/results/hosted.md, hosted.json).
# Usage: bench/hosted.sh [OWNERS (default 4)] [TERMINALS per owner (default 5)] [SECONDS a window (default 8)] [more options of `hosted`]
set -euo pipefail
args=()
[ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]] && { args+=(--owners "$1"); shift; }
[ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]] && { args+=(--terminals "$1"); shift; }
[ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]] && { args+=(--seconds "$1"); shift; }
exec "$(dirname "$0")/run.sh" hosted "${args[@]}" "$@"
