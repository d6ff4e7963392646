#!/usr/bin/env bash
# bench/helm.sh — index.yaml of a Helm repository with 10,000 chart versions. One command:
#
#   bench/helm.sh             CHARTS=100 VERSIONS=100 (10,000 versions), ROUNDS=9
#   QUICK=1 bench/helm.sh     CHARTS=20  VERSIONS=50  (1,000 versions),  ROUNDS=3
#
# It builds target/release/binaryrepo (NO_BUILD=1 skips that), starts it on a free 127.0.0.1
# port with one hosted Helm repository, and runs bench/helm_load.py, which uploads the chart
# versions (PUT /<repo>/<name>-<version>.tgz, realistic Chart.yaml with dependencies and
# maintainers) and measures:
#   * the first index.yaml GET after the uploads (catalog listing + full render),
#   * index.yaml after one more upload (the server re-renders one chart's YAML and
#     concatenates), ROUNDS times, median; server-side build time from the server log,
#   * cached index.yaml GETs, plain and gzip: response time (median of ROUNDS) and size,
#   * server RSS after the uploads and at the end (VmRSS, VmHWM).
# The markdown report goes to stdout and bench/results/helm-<UTC date-time>[-quick].md.
# Only loopback traffic; every wait is bounded; the server is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  CHARTS=${CHARTS:-20} VERSIONS=${VERSIONS:-50} ROUNDS=${ROUNDS:-3}
else
  CHARTS=${CHARTS:-100} VERSIONS=${VERSIONS:-100} ROUNDS=${ROUNDS:-9}
fi
THREADS=${THREADS:-4}
NO_BUILD=${NO_BUILD:-0}
KEEP=${KEEP:-0}
for v in CHARTS VERSIONS ROUNDS THREADS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive integer" >&2; exit 2; }
done

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

WORK=$(mktemp -d "${BENCH_TMP:-/tmp}/binaryrepo-helm-bench.XXXXXX")
SERVER_PID=''
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $KEEP == 1 ]]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $NO_BUILD != 1 ]]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet)
fi
BIN=$ROOT/target/release/binaryrepo
[[ -x $BIN ]] || die "$BIN is missing (run without NO_BUILD=1)"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$WORK/config.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"

[storage]
path = "$WORK/data"

[[repository]]
name = "charts"
format = "helm"
kind = "hosted"
EOF
"$BIN" serve --config "$WORK/config.toml" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 200); do
  kill -0 "$SERVER_PID" 2>/dev/null || die "binaryrepo exited; see $WORK/server.log"
  [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/healthz" || true) == 200 ]] && break
  sleep 0.1
done

TOTAL=$((CHARTS * VERSIONS))
log "uploading $TOTAL chart versions ($CHARTS charts x $VERSIONS versions, $THREADS threads)"
RESULT=$(python3 "$HERE/helm_load.py" 127.0.0.1 "$PORT" charts "$SERVER_PID" "$CHARTS" "$VERSIONS" "$ROUNDS" "$THREADS")
log "$RESULT"

# Server-side build times: the first render (catalog load + render) and the re-renders.
mapfile -t RENDERS < <(grep 'index.yaml rendered' "$WORK/server.log" | sed -E 's/\x1b\[[0-9;]*m//g')
field() { sed -nE "s/.*$1=([0-9.]+).*/\\1/p" <<<"$2"; }
FIRST=${RENDERS[0]:-}
REBUILDS=("${RENDERS[@]:1:$ROUNDS}")
add() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { printf "%.1f", a + b }'; }
rebuild_ms() { for line in "${REBUILDS[@]}"; do add "$(field view_ms "$line")" "$(field render_ms "$line")"; echo; done | sort -n; }
mapfile -t SORTED < <(rebuild_ms)
MEDIAN_REBUILD=${SORTED[$(( ${#SORTED[@]} / 2 ))]:-?}

json() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$RESULT" "$1"; }
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
SUFFIX=''
if [[ $QUICK == 1 ]]; then SUFFIX=-quick; fi
OUT=$ROOT/bench/results/helm-$STAMP$SUFFIX.md
mkdir -p "$ROOT/bench/results"
{
  echo "# bench/helm.sh — $STAMP"
  echo
  echo "binaryrepo $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, $(json versions) chart versions"
  echo "($CHARTS charts x $VERSIONS versions + $ROUNDS extra uploads), uploads at $(json uploads_per_s)/s with $THREADS clients."
  echo
  echo "| index.yaml | value |"
  echo "|---|---|"
  echo "| first GET after the uploads (catalog load + full render + transfer) | $(json cold_index_ms) ms |"
  echo "| server build time of that first index (view + render, from the log) | $(add "$(field view_ms "$FIRST")" "$(field render_ms "$FIRST")") ms |"
  echo "| server build time after one upload (median of $ROUNDS) | $MEDIAN_REBUILD ms |"
  echo "| GET right after one upload (median of $ROUNDS; max $(json after_one_upload_max_ms) ms) | $(json after_one_upload_ms) ms |"
  echo "| cached GET, plain (median of $ROUNDS) | $(json cached_plain_ms) ms |"
  echo "| cached GET, gzip (median of $ROUNDS) | $(json cached_gzip_ms) ms |"
  echo "| size plain | $(json plain_bytes) bytes |"
  echo "| size gzip | $(json gzip_bytes) bytes |"
  echo "| server RSS after the uploads | $(json rss_after_upload_mib) MiB |"
  echo "| server RSS at the end / peak (VmHWM) | $(json rss_mib) / $(json peak_rss_mib) MiB |"
} | tee "$OUT"
log "report: $OUT"
