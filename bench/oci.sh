#!/usr/bin/env bash
# bench/oci.sh — binaryrepo vs the CNCF distribution registry (Debian's `docker-registry`)
# vs nginx, side by side on loopback. One command from a clean checkout:
#
#   bench/oci.sh              full run  (BIG_MIB=100, DURATION=5, REPEAT=3; about 10 minutes)
#   QUICK=1 bench/oci.sh      smoke run (BIG_MIB=8,   DURATION=2, REPEAT=1; about 1 minute)
#
# It builds target/release/binaryrepo, installs missing tools with apt-get (docker-registry,
# nginx, wrk, apache2-utils for ab, skopeo, busybox-static), generates the test images with
# scripts/make-test-images.sh, starts on free 127.0.0.1 ports
#   upstream     CNCF registry seeded with the `big` image (its access log counts fetches)
#   binaryrepo   repositories `hosted` and `remote` (remote -> upstream)
#   cncf-proxy   CNCF registry, `proxy: remoteurl:` -> upstream
#   cncf-hosted  CNCF registry
#   nginx        serves the big blob file (the loopback ceiling)
# and measures
#   1. cache-hit blob GET throughput (wrk, 1 and THROUGHPUT_CONNS clients)
#   2. manifest GET/HEAD by tag, requests/s at MANIFEST_CONNS connections (GET: wrk; HEAD: ab,
#      because wrk 4.1 stalls after HEAD responses that carry a Content-Length)
#   3. cold pull through each proxy vs direct from upstream (skopeo, fresh proxy each time),
#      and time to first body byte of the big blob on a cold proxy
#   4. COLD_CLIENTS concurrent cold GETs of the big blob per (fresh) proxy: upstream fetches
#      and bytes from the upstream access log, wall time, every body's sha256 checked
#   5. push of the big image (skopeo) and a raw chunked upload (5 MiB PATCHes) vs one-core SHA-256
#   6. peak RSS (VmHWM, reset through /proc/PID/clear_refs) during 1 and 4
# The markdown report goes to stdout and bench/results/oci-<UTC date-time>[-quick].md.
#
# Knobs (environment):
#   BIG_MIB           size of the big random layer in MiB      (100; QUICK: 8)
#   DURATION          seconds per wrk/ab run                    (5;   QUICK: 2)
#   REPEAT            repetitions of cold pulls, TTFB and pushes; the median is reported (3; QUICK: 1)
#   ROUNDS            round-robin rounds of the wrk/ab cells in 1 and 2; median reported (REPEAT)
#   THROUGHPUT_CONNS  concurrent clients in the second throughput run (32)
#   MANIFEST_CONNS    connections for the manifest runs (64)
#   COLD_CLIENTS      concurrent cold GETs in phase 4 (50)
#   NO_BUILD=1        skip `cargo build --release` (use the existing target/release/binaryrepo)
#   KEEP=1            keep the work directory (configs, logs, data) for inspection
#   BENCH_TMP         parent of the work directory (default: /tmp)
# Only loopback traffic; every loop is bounded; all started processes are stopped on exit.
# pid lists are split on purpose (SC2046); W_* are set through printf -v from the wrk summary (SC2154)
# shellcheck disable=SC2046,SC2154
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  BIG_MIB=${BIG_MIB:-8} DURATION=${DURATION:-2} REPEAT=${REPEAT:-1}
else
  BIG_MIB=${BIG_MIB:-100} DURATION=${DURATION:-5} REPEAT=${REPEAT:-3}
fi
ROUNDS=${ROUNDS:-$REPEAT}
THROUGHPUT_CONNS=${THROUGHPUT_CONNS:-32}
MANIFEST_CONNS=${MANIFEST_CONNS:-64}
COLD_CLIENTS=${COLD_CLIENTS:-50}
NO_BUILD=${NO_BUILD:-0}
KEEP=${KEEP:-0}
for v in BIG_MIB DURATION REPEAT ROUNDS THROUGHPUT_CONNS MANIFEST_CONNS COLD_CLIENTS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive integer" >&2; exit 2; }
done

OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
MIB=1048576
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ processes and cleanup

declare -A PID=() PORT=() DATA=()
WORK=''
cleanup() {
  local rc=$? name
  trap - EXIT INT TERM
  for name in "${!PID[@]}"; do stop_server "$name" || true; done
  if [[ -n $WORK && -d $WORK ]]; then
    if [[ $KEEP == 1 ]]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stop_server() {
  local name=$1 pid=${PID[$1]:-} i
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PID[$name]"
}

freeport() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http NAME URL: until URL answers 200 (bounded: 20 s), while the process lives
wait_http() {
  local name=$1 url=$2 i
  for i in $(seq 1 200); do
    kill -0 "${PID[$name]}" 2>/dev/null || die "$name exited; see $WORK/logs/$name.*"
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true) == 200 ]] && return 0
    sleep 0.1
  done
  die "$name did not answer on $url"
}

# the process ids of a server (nginx: master and workers)
server_pids() {
  local pid=${PID[$1]}
  if [[ $1 == nginx ]]; then echo "$pid" $(pgrep -P "$pid" || true); else echo "$pid"; fi
}

# start_registry NAME MODE(hosted|proxy|upstream) [fresh]: a CNCF registry on a free port;
# the data directory is kept across restarts unless it is new or `fresh` is given
start_registry() {
  local name=$1 mode=$2 fresh=${3:-}
  stop_server "$name"
  if [[ -z ${DATA[$name]:-} || $fresh == fresh ]]; then
    [[ -n ${DATA[$name]:-} ]] && rm -rf "${DATA[$name]}"
    DATA[$name]=$(mktemp -d "$WORK/data/$name.XXXXXX")
  fi
  PORT[$name]=$(freeport)
  {
    printf 'version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n'
    printf 'storage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: %s\n' "${DATA[$name]}"
    printf '  delete:\n    enabled: true\n'
    printf 'http:\n  addr: 127.0.0.1:%s\n  secret: bench-%s\n' "${PORT[$name]}" "$name"
    if [[ $mode == proxy ]]; then
      printf 'proxy:\n  remoteurl: http://127.0.0.1:%s\n' "${PORT[upstream]}"
    fi
  } >"$WORK/conf/$name.yml"
  # stdout is the access log (combined format), stderr the application log
  docker-registry serve "$WORK/conf/$name.yml" >>"$WORK/logs/$name.access" 2>>"$WORK/logs/$name.err" &
  PID[$name]=$!
  wait_http "$name" "http://127.0.0.1:${PORT[$name]}/v2/"
}

# start_binaryrepo NAME [fresh]: repositories `hosted` and `remote` (-> upstream)
start_binaryrepo() {
  local name=$1 fresh=${2:-}
  stop_server "$name"
  if [[ -z ${DATA[$name]:-} || $fresh == fresh ]]; then
    [[ -n ${DATA[$name]:-} ]] && rm -rf "${DATA[$name]}"
    DATA[$name]=$(mktemp -d "$WORK/data/$name.XXXXXX")
  fi
  PORT[$name]=$(freeport)
  cat >"$WORK/conf/$name.toml" <<EOF
[server]
listen = "127.0.0.1:${PORT[$name]}"

[storage]
path = "${DATA[$name]}"

[[repository]]
name = "hosted"
format = "docker"
kind = "hosted"

[[repository]]
name = "remote"
format = "docker"
kind = "remote"
upstream = "http://127.0.0.1:${PORT[upstream]}"
EOF
  "$BIN" serve --config "$WORK/conf/$name.toml" >>"$WORK/logs/$name.log" 2>&1 &
  PID[$name]=$!
  wait_http "$name" "http://127.0.0.1:${PORT[$name]}/v2/"
}

start_nginx() {
  local d="$WORK/nginx"
  mkdir -p "$d/root"
  ln -f "$BIG_FILE" "$d/root/blob"
  PORT[nginx]=$(freeport)
  cat >"$d/nginx.conf" <<EOF
daemon off;
master_process on;
user root;
worker_processes auto;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${PORT[nginx]};
    root $d/root;
  }
}
EOF
  "$NGINX" -e "$d/error.log" -c "$d/nginx.conf" >>"$WORK/logs/nginx.log" 2>&1 &
  PID[nginx]=$!
  wait_http nginx "http://127.0.0.1:${PORT[nginx]}/blob"
}

# ------------------------------------------------------------------ measuring helpers

calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
# ratio A B [decimals]: A/B, or n/a
ratio() {
  if [[ -z ${1:-} || -z ${2:-} || $1 == n/a || $2 == n/a ]] || awk "BEGIN { exit !($2 == 0) }"; then
    echo n/a
  else calc "$1 / $2" "${3:-2}"; fi
}
# medf DECIMALS VALUE...: the median, rounded
medf() { calc "$(median "${@:2}")" "$1"; }
sum() { printf '%s\n' "$@" | awk '{ s += $1 } END { print s + 0 }'; }
maxof() { printf '%s\n' "$@" | sort -g | tail -n1; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "–" hi }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# yes/no for "value OP target"
met() { if awk "BEGIN { exit !($1 $2 $3) }" 2>/dev/null; then echo yes; else echo '**no**'; fi; }

cpu_ticks() {
  local t=0 p f
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] || continue
    read -r -a f < <(sed 's/^.*) //' "/proc/$p/stat")
    t=$((t + f[11] + f[12]))
  done
  echo "$t"
}
reset_hwm() { local p; for p in "$@"; do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || HWM_RESET=no; done; }
# peak RSS in MiB, summed over the processes
hwm_mib() {
  local k=0 p v
  for p in "$@"; do
    v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
    k=$((k + ${v:-0}))
  done
  calc "$k / 1024" 1
}
now_s() { date +%s.%N; }
# busy CPU ticks of the whole machine, and ticks used by this script and everything it waited for
machine_busy() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
own_ticks() { local f; read -r -a f < <(sed 's/^.*) //' "/proc/$$/stat"); echo $((f[11] + f[12] + f[13] + f[14])); }

# run_wrk SERVER CONNS URL [METHOD] [ACCEPT] -> sets W_* globals:
# W_bytes W_duration_us W_requests W_status ... W_mibs W_rps W_cpu (server %) W_client_cpu (%)
run_wrk() {
  local server=$1 conns=$2 url=$3 method=${4:-GET} accept=${5:-} threads=2 pids c0 c1 out kv t
  ((conns < 2)) && threads=1
  pids=$(server_pids "$server")
  c0=$(cpu_ticks $pids)
  out=$({
    TIMEFORMAT='CLIENT %U %S %R'
    time WRK_METHOD=$method WRK_ACCEPT=$accept wrk -t"$threads" -c"$conns" -d"${DURATION}s" \
      --timeout 60s -s "$HERE/wrk.lua" "$url"
  } 2>&1) || die "wrk failed: $out"
  c1=$(cpu_ticks $pids)
  printf '%s\n' "--- $server $method c=$conns $url" "$out" >>"$WORK/logs/wrk.txt"
  kv=$(sed -n 's/^BENCH //p' <<<"$out")
  [[ -n $kv ]] || die "no wrk summary: $out"
  for t in $kv; do printf -v "W_${t%%=*}" '%s' "${t#*=}"; done
  read -r _ cu cs creal < <(grep '^CLIENT ' <<<"$out")
  W_errors=$((W_connect + W_read + W_write + W_status))
  W_mibs=$(calc "$W_bytes / ($W_duration_us / 1000000) / $MIB" 1)
  W_rps=$(calc "$W_requests / ($W_duration_us / 1000000)" 0)
  W_cpu=$(calc "($c1 - $c0) / $CLK_TCK / ($W_duration_us / 1000000) * 100" 0)
  W_client_cpu=$(calc "($cu + $cs) / $creal * 100" 0)
}

# run_ab SERVER CONNS URL ACCEPT: HEAD requests with ApacheBench (wrk 4.1 waits for a body after
# a HEAD response and stalls), keep-alive, DURATION seconds -> W_rps W_errors W_cpu W_p99_us
run_ab() {
  local server=$1 conns=$2 url=$3 accept=$4 pids c0 c1 out t0 t1 complete failed non2xx
  pids=$(server_pids "$server")
  c0=$(cpu_ticks $pids)
  t0=$(now_s)
  out=$(ab -q -i -k -r -c "$conns" -t "$DURATION" -n 100000000 -s 60 -H "Accept: $accept" "$url" 2>&1) ||
    die "ab failed: $out"
  t1=$(now_s)
  c1=$(cpu_ticks $pids)
  printf '%s\n' "--- $server HEAD c=$conns $url" "$out" >>"$WORK/logs/ab.txt"
  W_rps=$(awk '/^Requests per second:/ { printf "%.0f", $4 }' <<<"$out")
  complete=$(awk '/^Complete requests:/ { print $3 }' <<<"$out")
  failed=$(awk '/^Failed requests:/ { print $3 }' <<<"$out")
  non2xx=$(awk '/^Non-2xx responses:/ { print $3 }' <<<"$out")
  [[ -n $W_rps && -n $complete ]] || die "no ab summary: $out"
  W_errors=$((failed + ${non2xx:-0}))
  W_p99_us=$(awk '$1 == "99%" { print $2 * 1000 }' <<<"$out")
  W_cpu=$(calc "($c1 - $c0) / $CLK_TCK / ($t1 - $t0) * 100" 0)
}

# check_blob URL: 200, full size and the right sha256, or die
check_blob() {
  local url=$1 sha meta
  sha=$(curl -sS --max-time 600 -w '%{stderr}%{http_code} %{size_download}\n' "$url" 2>"$WORK/logs/check.meta" |
    openssl dgst -sha256 -r | cut -d' ' -f1)
  meta=$(tail -n1 "$WORK/logs/check.meta")
  [[ $meta == "200 $BIG_SIZE" && sha256:$sha == "$BIG_DIGEST" ]] ||
    die "GET $url: got '$meta' sha256:$sha, want '200 $BIG_SIZE' $BIG_DIGEST"
}

# check_manifest URL METHOD: 200 with the expected digest header, or die
check_manifest() {
  local url=$1 method=$2 hdrs
  local how=(-X GET)
  [[ $method == HEAD ]] && how=(-I)
  hdrs=$(curl -sS --max-time 30 -o /dev/null -D - "${how[@]}" -H "Accept: $OCI_MANIFEST" "$url" | tr -d '\r')
  [[ $(head -n1 <<<"$hdrs") == *" 200"* ]] || die "$method $url: $(head -n1 <<<"$hdrs")"
  grep -qi "^docker-content-digest: $BIG_MANIFEST_DIGEST\$" <<<"$hdrs" || die "$method $url: wrong digest header"
}

UP_BLOB_PATH=''
up_lines() { wc -l <"$WORK/logs/upstream.access"; }
# up_blob_stats FROM_LINE -> "GETs bytes HEADs" of the big blob in the upstream access log since FROM_LINE
up_blob_stats() {
  tail -n "+$(($1 + 1))" "$WORK/logs/upstream.access" |
    awk -v p="$UP_BLOB_PATH" '$7 == p && $6 == "\"GET" { n++; b += $10 } $7 == p && $6 == "\"HEAD" { h++ }
      END { print n + 0, b + 0, h + 0 }'
}
# wait until the upstream access log stops growing (2 quiet checks 0.5 s apart, at most 60 s)
up_settle() {
  local i last=-1 cur quiet=0
  for i in $(seq 1 120); do
    cur=$(up_lines)
    if [[ $cur == "$last" ]]; then quiet=$((quiet + 1)); ((quiet >= 2)) && return 0; else quiet=0; fi
    last=$cur
    sleep 0.5
  done
}

# warm URL: GET (verified) until one GET causes no upstream blob GET (bounded: 40 tries)
warm() {
  local url=$1 i before
  for i in $(seq 1 40); do
    before=$(up_lines)
    check_blob "$url"
    sleep 0.5
    [[ $(up_blob_stats "$before" | cut -d' ' -f1) == 0 ]] && return 0
  done
  die "$url still fetches from upstream after 40 GETs"
}

# timed CMD...: runs CMD, sets T_s (wall seconds) and T_cpu (server CPU % of the server in $T_SERVER)
timed() {
  local t0 t1 c0 c1 pids=''
  [[ -n ${T_SERVER:-} ]] && pids=$(server_pids "$T_SERVER")
  c0=$(cpu_ticks $pids)
  t0=$(now_s)
  "$@" >"$WORK/logs/timed.last" 2>&1 || die "failed: $*: $(cat "$WORK/logs/timed.last")"
  t1=$(now_s)
  c1=$(cpu_ticks $pids)
  T_s=$(calc "$t1 - $t0" 3)
  T_cpu=$(calc "($c1 - $c0) / $CLK_TCK / ($t1 - $t0) * 100" 0)
  T_out=$(cat "$WORK/logs/timed.last")
  cat "$WORK/logs/timed.last" >>"$WORK/logs/timed.txt"
}

# ------------------------------------------------------------------ setup

cd "$ROOT"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before: $LOAD_BEFORE"
BUSY0=$(machine_busy) OWN0=$(own_ticks) RUN0=$(now_s)

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v ab >/dev/null || need+=(apache2-utils)
command -v skopeo >/dev/null || need+=(skopeo)
[[ -x /bin/busybox ]] || need+=(busybox-static)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v pgrep >/dev/null || need+=(procps)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
  [[ $(id -u) == 0 ]] || die "missing ${need[*]}; run as root or install them"
  log "apt-get install ${need[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [[ $NO_BUILD != 1 ]]; then
  log "cargo build --release"
  cargo build --release >&2
fi
BIN="$ROOT/target/release/binaryrepo"
[[ -x $BIN ]] || die "no $BIN"

WORK=$(mktemp -d "${BENCH_TMP:-/tmp}/binaryrepo-bench.XXXXXX")
mkdir -p "$WORK/conf" "$WORK/logs" "$WORK/data" "$WORK/pull"

log "generating images (BIG_MIB=$BIG_MIB)"
BIG_MIB=$BIG_MIB scripts/make-test-images.sh "$WORK/images" big >"$WORK/logs/images.txt"
IMG="$WORK/images/big"
read -r BIG_MANIFEST_DIGEST BIG_DIGEST BIG_SIZE IMAGE_BYTES < <(python3 - "$IMG" <<'PY'
import json, os, sys
d = sys.argv[1]
blob = lambda dg: os.path.join(d, "blobs", *dg.split(":"))
desc = json.load(open(os.path.join(d, "index.json")))["manifests"][0]
m = json.load(open(blob(desc["digest"])))
big = max(m["layers"], key=lambda l: l["size"])
total = desc["size"] + m["config"]["size"] + sum(l["size"] for l in m["layers"])
print(desc["digest"], big["digest"], big["size"], total)
PY
)
BIG_FILE="$IMG/blobs/sha256/${BIG_DIGEST#sha256:}"
UP_BLOB_PATH="/v2/bench/big/blobs/$BIG_DIGEST"
BIG_MIBF=$(calc "$BIG_SIZE / $MIB" 1)
log "big blob $BIG_DIGEST ($BIG_SIZE bytes), image $IMAGE_BYTES bytes"

log "single-core SHA-256 baselines"
SHA_OPENSSL=$(openssl speed -evp sha256 -bytes 16384 -seconds 3 2>/dev/null |
  awk '$1 == "sha256" { v = $NF; sub(/k$/, "", v); printf "%.1f", v * 1000 / 1048576 }')
SHA_PY=$(python3 - "$BIG_FILE" <<'PY'
import hashlib, sys, time
data = open(sys.argv[1], "rb").read()
best = 0
for _ in range(3):
    t = time.perf_counter(); hashlib.sha256(data).digest(); dt = time.perf_counter() - t
    best = max(best, len(data) / dt / 1048576)
print(f"{best:.1f}")
PY
)
log "sha256: openssl speed $SHA_OPENSSL MiB/s, python hashlib $SHA_PY MiB/s"

# A pushed blob must be on disk (fsync) before the registry acknowledges it: the disk's durable
# write speed bounds every push, whatever the hashing speed.
log "durable write floor of the data disk (dd conv=fsync, best of 3)"
DISK_FSYNC=0
for _ in 1 2 3; do
  t0=$(date +%s.%N)
  dd if="$BIG_FILE" of="$WORK/fsync-probe" bs=1M conv=fsync status=none
  t1=$(date +%s.%N)
  rm -f "$WORK/fsync-probe"
  DISK_FSYNC=$(python3 -c "import sys; print(f'{max(float(sys.argv[1]), $BIG_SIZE / ($t1 - $t0) / 1048576):.1f}')" "$DISK_FSYNC")
done
log "durable write: $DISK_FSYNC MiB/s"

HWM_RESET=yes

# ------------------------------------------------------------------ upstream

start_registry upstream upstream
log "upstream on :${PORT[upstream]}; seeding bench/big:1.0"
skopeo copy -q --dest-tls-verify=false "oci:$IMG:1.0" "docker://127.0.0.1:${PORT[upstream]}/bench/big:1.0" >&2

# ------------------------------------------------------------------ 5. pushes (fresh servers)

declare -a P_BR_SK=() P_BR_RAW=() P_CN_SK=() P_CN_RAW=() P_BR_SK_CPU=() P_BR_RAW_CPU=() P_CN_SK_CPU=() P_CN_RAW_CPU=()
push_skopeo() { skopeo copy -q --dest-tls-verify=false "oci:$IMG:1.0" "docker://127.0.0.1:$1:1.0"; }
push_raw() { python3 "$HERE/chunked_upload.py" "127.0.0.1:$1" "$2" "$BIG_FILE" "$BIG_DIGEST" 5; }
for rep in $(seq 1 "$REPEAT"); do
  log "5. push, round $rep/$REPEAT"
  start_binaryrepo br fresh
  T_SERVER=br timed push_raw "${PORT[br]}" hosted/bench/raw
  P_BR_RAW+=("${T_out%% *}") P_BR_RAW_CPU+=("$T_cpu")
  start_binaryrepo br fresh
  T_SERVER=br timed push_skopeo "${PORT[br]}/hosted/bench/big"
  P_BR_SK+=("$T_s") P_BR_SK_CPU+=("$T_cpu")
  start_registry hosted hosted fresh
  T_SERVER=hosted timed push_raw "${PORT[hosted]}" bench/raw
  P_CN_RAW+=("${T_out%% *}") P_CN_RAW_CPU+=("$T_cpu")
  start_registry hosted hosted fresh
  T_SERVER=hosted timed push_skopeo "${PORT[hosted]}/bench/big"
  P_CN_SK+=("$T_s") P_CN_SK_CPU+=("$T_cpu")
done
# the last round's servers keep the skopeo-pushed image for phases 1 and 2
mibs() { calc "$1 / $(median "${@:2}") / $MIB" 1; }
PUSH_BR_SK=$(mibs "$IMAGE_BYTES" "${P_BR_SK[@]}")
PUSH_BR_RAW=$(mibs "$BIG_SIZE" "${P_BR_RAW[@]}")
PUSH_CN_SK=$(mibs "$IMAGE_BYTES" "${P_CN_SK[@]}")
PUSH_CN_RAW=$(mibs "$BIG_SIZE" "${P_CN_RAW[@]}")

# ------------------------------------------------------------------ peers for phases 1 and 2

start_registry proxy proxy fresh
start_nginx
BRU="http://127.0.0.1:${PORT[br]}"
declare -A URL=(
  [br-hosted]="$BRU/v2/hosted/bench/big/blobs/$BIG_DIGEST"
  [br-remote]="$BRU/v2/remote/bench/big/blobs/$BIG_DIGEST"
  [cncf-hosted]="http://127.0.0.1:${PORT[hosted]}/v2/bench/big/blobs/$BIG_DIGEST"
  [cncf-proxy]="http://127.0.0.1:${PORT[proxy]}/v2/bench/big/blobs/$BIG_DIGEST"
  [nginx]="http://127.0.0.1:${PORT[nginx]}/blob"
)
declare -A SERVER=([br-hosted]=br [br-remote]=br [cncf-hosted]=hosted [cncf-proxy]=proxy [nginx]=nginx)
declare -A MURL=(
  [br-hosted]="$BRU/v2/hosted/bench/big/manifests/1.0"
  [br-remote]="$BRU/v2/remote/bench/big/manifests/1.0"
  [cncf-hosted]="http://127.0.0.1:${PORT[hosted]}/v2/bench/big/manifests/1.0"
  [cncf-proxy]="http://127.0.0.1:${PORT[proxy]}/v2/bench/big/manifests/1.0"
)
log "warming the proxies and checking every URL (status, size, sha256)"
for t in br-remote cncf-proxy; do
  check_manifest "${MURL[$t]}" GET
  warm "${URL[$t]}"
done
for t in br-hosted cncf-hosted nginx; do check_blob "${URL[$t]}"; done
for t in br-hosted br-remote cncf-hosted cncf-proxy; do check_manifest "${MURL[$t]}" HEAD; done

# ------------------------------------------------------------------ 1. blob throughput, 6. RSS

# Cells run round-robin, ROUNDS times (every target once per round), and the report takes the
# median per cell, so that load from other jobs spreads over all targets instead of hitting one.
declare -A TPL=() TPCPUL=() TPCLIL=() TPREQL=() TPERR=() TPRSS=()
TARGETS=(br-hosted br-remote cncf-hosted cncf-proxy nginx)
for round in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    for c in 1 "$THROUGHPUT_CONNS"; do
      log "1. blob GET $t, $c client(s), ${DURATION}s (round $round/$ROUNDS)"
      reset_hwm $(server_pids "${SERVER[$t]}")
      run_wrk "${SERVER[$t]}" "$c" "${URL[$t]}"
      TPL[$t,$c]+=" $W_mibs" TPCPUL[$t,$c]+=" $W_cpu" TPCLIL[$t,$c]+=" $W_client_cpu" TPREQL[$t,$c]+=" $W_requests"
      TPERR[$t,$c]=$((${TPERR[$t,$c]:-0} + W_errors))
      TPRSS[$t]=$(maxof "${TPRSS[$t]:-0}" "$(hwm_mib $(server_pids "${SERVER[$t]}"))")
    done
  done
done
declare -A TP=() TPCPU=() TPCLI=() TPREQ=() TPRANGE=()
for k in "${!TPL[@]}"; do
  TP[$k]=$(medf 1 ${TPL[$k]}) TPCPU[$k]=$(medf 0 ${TPCPUL[$k]}) TPCLI[$k]=$(medf 0 ${TPCLIL[$k]})
  TPREQ[$k]=$(sum ${TPREQL[$k]}) TPRANGE[$k]=$(range ${TPL[$k]})
done

# ------------------------------------------------------------------ 2. manifests

declare -A MFL=() MFCPUL=() MFP99L=() MFERR=()
MTARGETS=(br-hosted cncf-hosted br-remote cncf-proxy)
for round in $(seq 1 "$ROUNDS"); do
  for t in "${MTARGETS[@]}"; do
    for m in GET HEAD; do
      log "2. manifest $m $t, $MANIFEST_CONNS connections, ${DURATION}s (round $round/$ROUNDS)"
      if [[ $m == GET ]]; then
        run_wrk "${SERVER[$t]}" "$MANIFEST_CONNS" "${MURL[$t]}" GET "$OCI_MANIFEST"
      else
        run_ab "${SERVER[$t]}" "$MANIFEST_CONNS" "${MURL[$t]}" "$OCI_MANIFEST"
      fi
      MFL[$t,$m]+=" $W_rps" MFCPUL[$t,$m]+=" $W_cpu" MFP99L[$t,$m]+=" $(calc "$W_p99_us / 1000" 2)"
      MFERR[$t,$m]=$((${MFERR[$t,$m]:-0} + W_errors))
    done
  done
done
declare -A MF=() MFCPU=() MFP99=() MFRANGE=()
for k in "${!MFL[@]}"; do
  MF[$k]=$(medf 0 ${MFL[$k]}) MFCPU[$k]=$(medf 0 ${MFCPUL[$k]}) MFP99[$k]=$(medf 1 ${MFP99L[$k]})
  MFRANGE[$k]=$(range ${MFL[$k]})
done

# the warm servers are not needed any more: phases 3 and 4 use fresh proxies
for s in br hosted proxy nginx; do stop_server "$s"; done

# ------------------------------------------------------------------ 3. cold pull and TTFB

declare -a C_DIRECT=() C_BR=() C_CN=() F_BR=() F_BRT=() F_CN=() F_CNT=() F_DIR=() F_DIRF=()
pull() { rm -rf "$WORK/pull/img"; skopeo copy -q --src-tls-verify=false "docker://$1" "oci:$WORK/pull/img:1.0"; }
ttfb() { # URL -> "first_body_s total_s", verified
  local out
  out=$(python3 "$HERE/ttfb.py" "$1")
  read -r code _ first total bytes sha <<<"$out"
  [[ $code == 200 && $bytes == "$BIG_SIZE" && sha256:$sha == "$BIG_DIGEST" ]] || die "cold GET $1: $out"
  echo "$first $total"
}
for rep in $(seq 1 "$REPEAT"); do
  log "3. cold pull and first byte, round $rep/$REPEAT"
  T_SERVER='' timed pull "127.0.0.1:${PORT[upstream]}/bench/big:1.0"
  C_DIRECT+=("$T_s")
  start_binaryrepo cold-br fresh
  T_SERVER=cold-br timed pull "127.0.0.1:${PORT[cold-br]}/remote/bench/big:1.0"
  C_BR+=("$T_s")
  start_registry cold-cncf proxy fresh
  T_SERVER=cold-cncf timed pull "127.0.0.1:${PORT[cold-cncf]}/bench/big:1.0"
  C_CN+=("$T_s")
  read -r a b < <(ttfb "http://127.0.0.1:${PORT[upstream]}$UP_BLOB_PATH"); F_DIRF+=("$a") F_DIR+=("$b")
  start_binaryrepo cold-br fresh
  read -r a b < <(ttfb "http://127.0.0.1:${PORT[cold-br]}/v2/remote/bench/big/blobs/$BIG_DIGEST"); F_BR+=("$a") F_BRT+=("$b")
  start_registry cold-cncf proxy fresh
  read -r a b < <(ttfb "http://127.0.0.1:${PORT[cold-cncf]}/v2/bench/big/blobs/$BIG_DIGEST"); F_CN+=("$a") F_CNT+=("$b")
done
stop_server cold-br
stop_server cold-cncf
COLD_DIRECT=$(median "${C_DIRECT[@]}") COLD_BR=$(median "${C_BR[@]}") COLD_CN=$(median "${C_CN[@]}")
TTFB_BR=$(median "${F_BR[@]}") TTFB_BRT=$(median "${F_BRT[@]}")
TTFB_CN=$(median "${F_CN[@]}") TTFB_CNT=$(median "${F_CNT[@]}")
TTFB_DIRF=$(median "${F_DIRF[@]}") TTFB_DIR=$(median "${F_DIR[@]}")

# ------------------------------------------------------------------ 4. concurrent cold GETs, 6. RSS

declare -A CC_GETS=() CC_BYTES=() CC_HEADS=() CC_TIME=() CC_OK=() CC_RSS=() CC_CPU=()
cold_burst() { # NAME URL
  local name=$1 url=$2 before t0 t1 c0 c1 i d="$WORK/burst-$1" pids=() ok=0 meta sha
  mkdir -p "$d"
  before=$(up_lines)
  reset_hwm "${PID[$name]}"
  c0=$(cpu_ticks "${PID[$name]}")
  t0=$(now_s)
  for i in $(seq 1 "$COLD_CLIENTS"); do
    (curl -sS --max-time 600 -w '%{stderr}%{http_code} %{size_download}\n' "$url" 2>"$d/$i.meta" |
      openssl dgst -sha256 -r | cut -d' ' -f1 >"$d/$i.sha") &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || true; done
  t1=$(now_s)
  c1=$(cpu_ticks "${PID[$name]}")
  CC_RSS[$name]=$(hwm_mib "${PID[$name]}")
  up_settle
  read -r CC_GETS[$name] CC_BYTES[$name] CC_HEADS[$name] < <(up_blob_stats "$before")
  for i in $(seq 1 "$COLD_CLIENTS"); do
    meta=$(tail -n1 "$d/$i.meta") sha=$(cat "$d/$i.sha")
    [[ $meta == "200 $BIG_SIZE" && sha256:$sha == "$BIG_DIGEST" ]] && ok=$((ok + 1))
  done
  CC_OK[$name]=$ok
  CC_TIME[$name]=$(calc "$t1 - $t0" 2)
  CC_CPU[$name]=$(calc "($c1 - $c0) / $CLK_TCK / ($t1 - $t0) * 100" 0)
}
log "4. $COLD_CLIENTS concurrent cold GETs through binaryrepo"
start_binaryrepo cold-br fresh
cold_burst cold-br "http://127.0.0.1:${PORT[cold-br]}/v2/remote/bench/big/blobs/$BIG_DIGEST"
stop_server cold-br
log "4. $COLD_CLIENTS concurrent cold GETs through the CNCF proxy"
start_registry cold-cncf proxy fresh
cold_burst cold-cncf "http://127.0.0.1:${PORT[cold-cncf]}/v2/bench/big/blobs/$BIG_DIGEST"
stop_server cold-cncf

# every server is stopped and waited for by now, so own_ticks covers all of the benchmark's processes
BUSY1=$(machine_busy) OWN1=$(own_ticks) RUN1=$(now_s)
OTHER_CPU=$(calc "(($BUSY1 - $BUSY0) - ($OWN1 - $OWN0)) / $CLK_TCK / ($RUN1 - $RUN0) * 100" 0)
OWN_CPU=$(calc "($OWN1 - $OWN0) / $CLK_TCK / ($RUN1 - $RUN0) * 100" 0)
RUN_S=$(calc "$RUN1 - $RUN0" 0)
log "CPU over ${RUN_S}s: benchmark $OWN_CPU %, other processes $OTHER_CPU % (100 % = one core)"

# ------------------------------------------------------------------ report

C=$THROUGHPUT_CONNS
R_H1N=$(ratio "${TP[br-hosted,1]}" "${TP[nginx,1]}") R_H1C=$(ratio "${TP[br-hosted,1]}" "${TP[cncf-hosted,1]}")
R_HCN=$(ratio "${TP[br-hosted,$C]}" "${TP[nginx,$C]}") R_HCC=$(ratio "${TP[br-hosted,$C]}" "${TP[cncf-hosted,$C]}")
R_R1N=$(ratio "${TP[br-remote,1]}" "${TP[nginx,1]}") R_R1C=$(ratio "${TP[br-remote,1]}" "${TP[cncf-proxy,1]}")
R_RCN=$(ratio "${TP[br-remote,$C]}" "${TP[nginx,$C]}") R_RCC=$(ratio "${TP[br-remote,$C]}" "${TP[cncf-proxy,$C]}")
R_MG=$(ratio "${MF[br-hosted,GET]}" "${MF[cncf-hosted,GET]}") R_MH=$(ratio "${MF[br-hosted,HEAD]}" "${MF[cncf-hosted,HEAD]}")
R_MRG=$(ratio "${MF[br-remote,GET]}" "${MF[cncf-proxy,GET]}") R_MRH=$(ratio "${MF[br-remote,HEAD]}" "${MF[cncf-proxy,HEAD]}")
R_CB=$(ratio "$COLD_BR" "$COLD_DIRECT") R_CC=$(ratio "$COLD_CN" "$COLD_DIRECT")
R_FB=$(ratio "$TTFB_BR" "$TTFB_DIR")
R_PS=$(ratio "$PUSH_BR_SK" "$SHA_OPENSSL") R_PR=$(ratio "$PUSH_BR_RAW" "$SHA_OPENSSL")
MB_BR=$(calc "${CC_BYTES[cold-br]} / $MIB" 1) MB_CN=$(calc "${CC_BYTES[cold-cncf]} / $MIB" 1)
RSS1_BR=$(awk -v a="${TPRSS[br-hosted]}" -v b="${TPRSS[br-remote]}" 'BEGIN { print (a > b ? a : b) }')
RSS1_CN=$(awk -v a="${TPRSS[cncf-hosted]}" -v b="${TPRSS[cncf-proxy]}" 'BEGIN { print (a > b ? a : b) }')

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUTDIR="$HERE/results"
mkdir -p "$OUTDIR"
SUFFIX=''
[[ $QUICK == 1 ]] && SUFFIX=-quick
OUT="$OUTDIR/oci-$STAMP$SUFFIX.md"
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM_GIB=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | grep -q . && echo ' (src modified)' || true)

{
  echo "# binaryrepo OCI benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "\`bench/oci.sh\` with BIG_MIB=$BIG_MIB DURATION=${DURATION}s REPEAT=$REPEAT ROUNDS=$ROUNDS QUICK=$QUICK;" \
    "binaryrepo $REV$DIRTY; $(docker-registry --version | awk '{ print "CNCF registry " $NF }');" \
    "$("$NGINX" -v 2>&1 | sed 's/.*: //'); $(wrk -v 2>&1 | head -n1 | awk '{ print $1, $2 }'); $(skopeo --version)"
  echo
  echo "Machine: $(nproc) cores, $CPU_MODEL, ${MEM_GIB} GiB RAM, Linux $(uname -r)." \
    "Load average (1/5/15 min) at start: $LOAD_BEFORE. Over the ${RUN_S} s run the benchmark's own processes used" \
    "$OWN_CPU % and other processes on the machine $OTHER_CPU % CPU on average (100 % = one core)." \
    "Big blob: $BIG_SIZE bytes ($BIG_MIBF MiB), image $IMAGE_BYTES bytes. MiB/s = 2^20 bytes/s."
  echo
  echo "## Summary (ratio = binaryrepo / peer)"
  echo
  echo "| # | measurement | binaryrepo | peer | peer value | ratio | target | met |"
  echo "|---|---|---:|---|---:|---:|---|---|"
  echo "| 1 | hosted blob GET, 1 client (MiB/s) | ${TP[br-hosted,1]} | nginx | ${TP[nginx,1]} | $R_H1N | ≥ 0.8 | $(met "$R_H1N" '>=' 0.8) |"
  echo "| 1 | hosted blob GET, 1 client (MiB/s) | ${TP[br-hosted,1]} | CNCF hosted | ${TP[cncf-hosted,1]} | $R_H1C | ≥ 1.5 | $(met "$R_H1C" '>=' 1.5) |"
  echo "| 1 | hosted blob GET, $C clients (MiB/s) | ${TP[br-hosted,$C]} | nginx | ${TP[nginx,$C]} | $R_HCN | ≥ 0.8 | $(met "$R_HCN" '>=' 0.8) |"
  echo "| 1 | hosted blob GET, $C clients (MiB/s) | ${TP[br-hosted,$C]} | CNCF hosted | ${TP[cncf-hosted,$C]} | $R_HCC | ≥ 1.5 | $(met "$R_HCC" '>=' 1.5) |"
  echo "| 1 | remote (warm) blob GET, 1 client (MiB/s) | ${TP[br-remote,1]} | nginx | ${TP[nginx,1]} | $R_R1N | ≥ 0.8 | $(met "$R_R1N" '>=' 0.8) |"
  echo "| 1 | remote (warm) blob GET, 1 client (MiB/s) | ${TP[br-remote,1]} | CNCF proxy | ${TP[cncf-proxy,1]} | $R_R1C | ≥ 1.5 | $(met "$R_R1C" '>=' 1.5) |"
  echo "| 1 | remote (warm) blob GET, $C clients (MiB/s) | ${TP[br-remote,$C]} | nginx | ${TP[nginx,$C]} | $R_RCN | ≥ 0.8 | $(met "$R_RCN" '>=' 0.8) |"
  echo "| 1 | remote (warm) blob GET, $C clients (MiB/s) | ${TP[br-remote,$C]} | CNCF proxy | ${TP[cncf-proxy,$C]} | $R_RCC | ≥ 1.5 | $(met "$R_RCC" '>=' 1.5) |"
  echo "| 2 | manifest GET by tag, $MANIFEST_CONNS conns (req/s) | ${MF[br-hosted,GET]} | CNCF hosted | ${MF[cncf-hosted,GET]} | $R_MG | ≥ 10 | $(met "$R_MG" '>=' 10) |"
  echo "| 2 | manifest HEAD by tag, $MANIFEST_CONNS conns (req/s) | ${MF[br-hosted,HEAD]} | CNCF hosted | ${MF[cncf-hosted,HEAD]} | $R_MH | ≥ 10 | $(met "$R_MH" '>=' 10) |"
  echo "| 2 | remote manifest GET by tag (req/s) | ${MF[br-remote,GET]} | CNCF proxy | ${MF[cncf-proxy,GET]} | $R_MRG | — | |"
  echo "| 2 | remote manifest HEAD by tag (req/s) | ${MF[br-remote,HEAD]} | CNCF proxy | ${MF[cncf-proxy,HEAD]} | $R_MRH | — | |"
  echo "| 3 | cold pull via proxy, skopeo (s) | $COLD_BR | direct from upstream | $COLD_DIRECT | $R_CB | ≤ 1.10 | $(met "$R_CB" '<=' 1.10) |"
  echo "| 3 | cold pull via CNCF proxy, for reference (s) | — | CNCF proxy / direct | $COLD_CN | $R_CC (CNCF) | — | |"
  echo "| 3 | cold blob GET, first body byte (s) | $TTFB_BR | direct GET, last byte | $TTFB_DIR | $R_FB | < 1 | $(met "$R_FB" '<' 1) |"
  echo "| 3 | cold blob GET, last byte (s) | $TTFB_BRT | CNCF proxy first / last byte | $TTFB_CN / $TTFB_CNT | — | — | |"
  echo "| 4 | $COLD_CLIENTS cold GETs: upstream blob GETs | ${CC_GETS[cold-br]} | CNCF proxy | ${CC_GETS[cold-cncf]} | $(ratio "${CC_GETS[cold-br]}" "${CC_GETS[cold-cncf]}") | = 1 | $(met "${CC_GETS[cold-br]}" '==' 1) |"
  echo "| 4 | $COLD_CLIENTS cold GETs: upstream bytes (MiB) | $MB_BR | CNCF proxy | $MB_CN | $(ratio "$MB_BR" "$MB_CN") | = 1 blob | $(met "${CC_BYTES[cold-br]}" '==' "$BIG_SIZE") |"
  echo "| 4 | $COLD_CLIENTS cold GETs: wall time (s) | ${CC_TIME[cold-br]} | CNCF proxy | ${CC_TIME[cold-cncf]} | $(ratio "${CC_TIME[cold-br]}" "${CC_TIME[cold-cncf]}") | — | |"
  echo "| 4 | $COLD_CLIENTS cold GETs: bodies with the right sha256 | ${CC_OK[cold-br]}/$COLD_CLIENTS | CNCF proxy | ${CC_OK[cold-cncf]}/$COLD_CLIENTS | — | all | $(met "${CC_OK[cold-br]}" '==' "$COLD_CLIENTS") |"
  echo "| 5 | push, skopeo (MiB/s) | $PUSH_BR_SK | 1-core SHA-256 (openssl) | $SHA_OPENSSL | $R_PS | ≥ 0.7 | $(met "$R_PS" '>=' 0.7) |"
  echo "| 5 | push, raw chunked 5 MiB PATCHes (MiB/s) | $PUSH_BR_RAW | 1-core SHA-256 (openssl) | $SHA_OPENSSL | $R_PR | ≥ 0.7 | $(met "$R_PR" '>=' 0.7) |"
  echo "| 5 | push, raw chunked vs the disk's durable write speed (MiB/s) | $PUSH_BR_RAW | dd conv=fsync | $DISK_FSYNC | $(ratio "$PUSH_BR_RAW" "$DISK_FSYNC") | — | |"
  echo "| 5 | push, skopeo / chunked (MiB/s) | $PUSH_BR_SK / $PUSH_BR_RAW | CNCF hosted | $PUSH_CN_SK / $PUSH_CN_RAW | $(ratio "$PUSH_BR_SK" "$PUSH_CN_SK") / $(ratio "$PUSH_BR_RAW" "$PUSH_CN_RAW") | — | |"
  echo "| 6 | peak RSS during 1 (MiB) | $RSS1_BR | CNCF (hosted, proxy) | $RSS1_CN | $(ratio "$RSS1_BR" "$RSS1_CN") | ≤ 100 MiB | $(met "$RSS1_BR" '<=' 100) |"
  echo "| 6 | peak RSS during 4 (MiB) | ${CC_RSS[cold-br]} | CNCF proxy | ${CC_RSS[cold-cncf]} | $(ratio "${CC_RSS[cold-br]}" "${CC_RSS[cold-cncf]}") | ≤ 100 MiB | $(met "${CC_RSS[cold-br]}" '<=' 100) |"
  echo
  echo "## 1. Cache-hit blob GET ($BIG_MIBF MiB blob, wrk, ${DURATION}s per cell and round)"
  echo
  echo "| server | 1 client MiB/s | range | $C clients MiB/s | range | server CPU % (1 / $C) | wrk CPU % (1 / $C) | responses (1 / $C) | errors | peak RSS MiB |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for t in "${TARGETS[@]}"; do
    echo "| $t | ${TP[$t,1]} | ${TPRANGE[$t,1]} | ${TP[$t,$C]} | ${TPRANGE[$t,$C]} | ${TPCPU[$t,1]} / ${TPCPU[$t,$C]} | ${TPCLI[$t,1]} / ${TPCLI[$t,$C]} | ${TPREQ[$t,1]} / ${TPREQ[$t,$C]} | $((TPERR[$t,1] + TPERR[$t,$C])) | ${TPRSS[$t]} |"
  done
  echo
  echo "Median of $ROUNDS round-robin rounds (range = min–max); responses = completed responses summed over the rounds."
  echo "CPU % is per core (200 % = both cores). Throughput counts every byte wrk read, partial responses included."
  echo "Peak RSS: VmHWM reset before every cell, the highest value over the row's cells; binaryrepo hosted and remote are one process; nginx = master + workers."
  echo
  echo "## 2. Manifest by tag (Accept: $OCI_MANIFEST, $MANIFEST_CONNS keep-alive connections, ${DURATION}s; GET with wrk -t2, HEAD with ab -i -k)"
  echo
  echo "| server | GET req/s | range | HEAD req/s | range | server CPU % (GET / HEAD) | p99 ms (GET / HEAD) | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for t in "${MTARGETS[@]}"; do
    echo "| $t | ${MF[$t,GET]} | ${MFRANGE[$t,GET]} | ${MF[$t,HEAD]} | ${MFRANGE[$t,HEAD]} | ${MFCPU[$t,GET]} / ${MFCPU[$t,HEAD]} | ${MFP99[$t,GET]} / ${MFP99[$t,HEAD]} | $((MFERR[$t,GET] + MFERR[$t,HEAD])) |"
  done
  echo
  echo "Median of $ROUNDS round-robin rounds. The remote rows are extras without a target: binaryrepo answers a cached tag" \
    "from its catalog within metadata_ttl (5m), the CNCF proxy asks the upstream for every tag request."
  echo
  echo "## 3. Cold pull (skopeo copy to an oci: dir, fresh proxy each time) and first byte (median of $REPEAT)"
  echo
  echo "| path | pull s (each run) | GET first body byte s | GET last byte s |"
  echo "|---|---|---:|---:|"
  echo "| direct from upstream | ${C_DIRECT[*]} | $TTFB_DIRF | $TTFB_DIR |"
  echo "| binaryrepo remote (cold) | ${C_BR[*]} | $TTFB_BR | $TTFB_BRT |"
  echo "| CNCF proxy (cold) | ${C_CN[*]} | $TTFB_CN | $TTFB_CNT |"
  echo
  echo "## 4. $COLD_CLIENTS concurrent cold GETs of the big blob (fresh proxy; each body piped through sha256)"
  echo
  echo "| proxy | upstream blob GETs | upstream blob HEADs | upstream MiB | wall s | server CPU % | bodies OK | peak RSS MiB |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  echo "| binaryrepo remote | ${CC_GETS[cold-br]} | ${CC_HEADS[cold-br]} | $MB_BR | ${CC_TIME[cold-br]} | ${CC_CPU[cold-br]} | ${CC_OK[cold-br]}/$COLD_CLIENTS | ${CC_RSS[cold-br]} |"
  echo "| CNCF proxy | ${CC_GETS[cold-cncf]} | ${CC_HEADS[cold-cncf]} | $MB_CN | ${CC_TIME[cold-cncf]} | ${CC_CPU[cold-cncf]} | ${CC_OK[cold-cncf]}/$COLD_CLIENTS | ${CC_RSS[cold-cncf]} |"
  echo
  echo "## 5. Push to a fresh hosted repository (median of $REPEAT)"
  echo
  echo "| server | skopeo s (each run) | skopeo MiB/s | server CPU % | chunked s (each run) | chunked MiB/s | server CPU % |"
  echo "|---|---|---:|---:|---|---:|---:|"
  echo "| binaryrepo | ${P_BR_SK[*]} | $PUSH_BR_SK | ${P_BR_SK_CPU[*]} | ${P_BR_RAW[*]} | $PUSH_BR_RAW | ${P_BR_RAW_CPU[*]} |"
  echo "| CNCF hosted | ${P_CN_SK[*]} | $PUSH_CN_SK | ${P_CN_SK_CPU[*]} | ${P_CN_RAW[*]} | $PUSH_CN_RAW | ${P_CN_RAW_CPU[*]} |"
  echo
  echo "skopeo pushes the whole image ($IMAGE_BYTES bytes, client-side hashing included); chunked is the big blob alone" \
    "(POST, 5 MiB PATCHes, PUT ?digest= over one connection, bench/chunked_upload.py; time from POST to the PUT's 201)." \
    "Single-core SHA-256: openssl speed -evp sha256 (16 KiB blocks) $SHA_OPENSSL MiB/s; python hashlib over the blob $SHA_PY MiB/s. Durable write speed of the data disk (dd conv=fsync of the blob, best of 3): $DISK_FSYNC MiB/s."
  [[ $HWM_RESET == yes ]] || echo "Note: /proc/PID/clear_refs was not writable; peak RSS is since process start."
} | tee "$OUT"
log "report written to $OUT"
