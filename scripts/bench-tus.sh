#!/usr/bin/env bash
# Side-by-side benchmark of Airlock's tus endpoint (/v1/tus) against the
# reference tus server, @tus/server with @tus/file-store
# (tests/tus/tus-server.mjs), driven by the same load tools (bench.mjs,
# and curl for one large PATCH), in one run on one disk:
# - small: BENCH_SMALL_COUNT (400) uploads of a 180 KiB file,
#   BENCH_CONCURRENCY (16) in flight, each one creation-with-upload POST,
#   in BENCH_ROUNDS (3) rounds alternating between the servers (medians):
#   uploads/s, p50 and p99 latency;
# - large: one BENCH_LARGE_MIB (1024) MiB upload in 8 MiB PATCHes
#   (bench.mjs), then one in a single PATCH (curl, see curl_whole): MB/s,
#   and the server's largest VmRSS over both, sampled every 100 ms;
# - the disk's floor: dd of 1 GiB (bs=8M, conv=fsync) into the same dir.
# Prints a markdown table with the ratios airlock/@tus-server (uploads/s)
# and airlock/dd (MB/s).
#
#   AIRLOCK_BIN=path/to/airlock scripts/bench-tus.sh
#
# It builds nothing: AIRLOCK_BIN (default $AIRLOCK_CACHE/target/release/airlock)
# must be a release build. BENCH_ALLOW_MISSING=1: an Airlock half that does
# not start or whose uploads fail shows as n/a instead of failing the run.
# Servers, data and inputs live in a temp dir on the disk of $AIRLOCK_CACHE
# (not /tmp, which may be tmpfs), removed at the end unless BENCH_KEEP=1.
# Needs about 4 GiB free there. Node packages: scripts/install-test-clients.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${AIRLOCK_CACHE:-$HOME/.cache/airlock}"
AIRLOCK_BIN="${AIRLOCK_BIN:-$CACHE/target/release/airlock}"
ALLOW_MISSING="${BENCH_ALLOW_MISSING:-0}"
SMALL_COUNT="${BENCH_SMALL_COUNT:-400}"
CONCURRENCY="${BENCH_CONCURRENCY:-16}"
ROUNDS="${BENCH_ROUNDS:-3}"
LARGE_MIB="${BENCH_LARGE_MIB:-1024}"
CHUNK_BYTES=$((8 * 1024 * 1024))
START_TIMEOUT=30
BENCH_TIMEOUT=900
TUS_DIR="$ROOT/tests/tus"

say() { printf 'bench-tus: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

"$ROOT/scripts/install-test-clients.sh"

mkdir -p "$CACHE"
WORK="$(mktemp -d "$CACHE/bench-tus.XXXXXX")"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
    say "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

fstype="$(df --output=fstype "$WORK" | tail -1 | tr -d ' ')"
[[ "$fstype" != tmpfs ]] || say "warning: $WORK is on tmpfs: the figures are memory's, not a disk's"
say "work dir $WORK ($fstype, $(df -h --output=avail "$WORK" | tail -1 | tr -d ' ') free)"

# Prints field $2 of the JSON object in file $1, or n/a.
jget() {
  node -e '
    const fs = require("fs")
    let v
    try { v = JSON.parse(fs.readFileSync(process.argv[1], "utf8"))[process.argv[2]] } catch {}
    process.stdout.write(v == null ? "n/a" : String(v))
  ' "$1" "$2"
}

# Waits for a line matching $2 in file $1 (ANSI colours stripped) from the
# live process $3; prints the line.
wait_for_line() {
  local file=$1 pattern=$2 pid=$3 line i
  for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    line="$(sed 's/\x1b\[[0-9;]*m//g' "$file" 2>/dev/null | grep -m1 -E "$pattern" || true)"
    if [[ -n "$line" ]]; then
      printf '%s\n' "$line"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

start_tus_server() {
  mkdir -p "$WORK/tus-data"
  node "$TUS_DIR/tus-server.mjs" "$WORK/tus-data" >"$WORK/tus-server.log" 2>&1 &
  TUS_PID=$!
  PIDS+=("$TUS_PID")
  local line
  line="$(wait_for_line "$WORK/tus-server.log" '^listening http://' "$TUS_PID")" ||
    die "@tus/server did not start: $(tail -5 "$WORK/tus-server.log")"
  TUS_ENDPOINT="${line#listening }/v1/tus"
  say "@tus/server at $TUS_ENDPOINT (pid $TUS_PID)"
}

# ---------------------------------------------------------------------------
# start_airlock: writes Airlock's config, starts "$AIRLOCK_BIN" serve with
# RUST_LOG=info and reads its address from the `airlock listening` log line
# (`addr=127.0.0.1:PORT`, maybe with ANSI colours). Sets AIRLOCK_PID and
# AIRLOCK_ENDPOINT; returns 1 when it does not start.
# ---------------------------------------------------------------------------
start_airlock() {
  [[ -x "$AIRLOCK_BIN" ]] || {
    say "no Airlock binary at $AIRLOCK_BIN (build it with cargo build --release, or set AIRLOCK_BIN)"
    return 1
  }
  mkdir -p "$WORK/airlock-data"
  # No [[clients]]: uploads without auth, loopback only. max_body_bytes: the
  # large upload is over the 100 MiB default.
  cat >"$WORK/airlock.toml" <<EOF
[server]
listen = "127.0.0.1:0"
max_body_bytes = $(((LARGE_MIB + 64) * 1024 * 1024))

[storage]
backend = "local"
path = "$WORK/airlock-data"
EOF
  RUST_LOG=info "$AIRLOCK_BIN" serve --config "$WORK/airlock.toml" >"$WORK/airlock.log" 2>&1 &
  AIRLOCK_PID=$!
  PIDS+=("$AIRLOCK_PID")
  local line addr
  if ! line="$(wait_for_line "$WORK/airlock.log" 'airlock listening' "$AIRLOCK_PID")"; then
    say "Airlock did not start: $(tail -5 "$WORK/airlock.log")"
    return 1
  fi
  addr="$(grep -oE 'addr=[0-9.]+:[0-9]+' <<<"$line" | head -1)"
  [[ -n "$addr" ]] || { say "no addr= in: $line"; return 1; }
  AIRLOCK_ENDPOINT="http://${addr#addr=}/v1/tus"
  say "Airlock at $AIRLOCK_ENDPOINT (pid $AIRLOCK_PID)"
}

# Runs bench.mjs with JSON $2 for server $1; its result line goes to
# $WORK/$1-$3.json. Fails when bench fails or no upload succeeded.
run_bench() {
  local name=$1 json=$2 mode=$3 out="$WORK/$1-$3.json"
  say "$mode uploads to $name"
  if ! timeout "$BENCH_TIMEOUT" node "$TUS_DIR/bench.mjs" "$json" >"$out" 2>>"$WORK/bench-$name.err"; then
    say "$name $mode failed: $(cat "$out") $(tail -2 "$WORK/bench-$name.err")"
    return 1
  fi
  if [[ "$mode" == small && "$(jget "$out" errors)" != 0 ]]; then
    say "$name: $(jget "$out" errors) of $SMALL_COUNT small uploads failed: $(tail -1 "$WORK/bench-$name.err")"
    [[ "$(jget "$out" uploadsPerSec)" != 0 ]] || return 1
  fi
}

# Largest VmRSS (KiB) of pid $1, sampled every 100 ms, kept in file $2.
sample_rss() {
  local pid=$1 out=$2 max=0 kb
  while kb="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" && [[ -n "$kb" ]]; do
    if ((kb > max)); then
      max=$kb
      echo "$max" >"$out"
    fi
    sleep 0.1
  done
}

# Large upload to server $1 (pid $2, endpoint $3), its RSS sampled meanwhile.
# The large file in one PATCH, sent by curl (what an unmodified
# tus-js-client does: its default chunkSize is the whole file). bench.mjs
# cannot show a server's own speed here: Node's HTTP client tops out near
# 200 MB/s on this 2-core machine, whichever server it talks to. Writes
# $WORK/NAME-whole.json.
curl_whole() { # name endpoint
  local name=$1 endpoint=$2 size loc url code started ended
  size=$(stat -c %s "$WORK/large.bin")
  loc=$(curl -sS -D - -o /dev/null -X POST "$endpoint" -H 'Tus-Resumable: 1.0.0' \
    -H "Upload-Length: $size" | tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
  [[ -n "$loc" ]] || { say "$name: the creation gave no Location"; return 1; }
  case "$loc" in
    /*) url="$(grep -oE '^https?://[^/]+' <<<"$endpoint")$loc" ;;
    *) url=$loc ;;
  esac
  started=$(date +%s.%N)
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X PATCH "$url" -H 'Tus-Resumable: 1.0.0' \
    -H 'Upload-Offset: 0' -H 'Content-Type: application/offset+octet-stream' -T "$WORK/large.bin")
  ended=$(date +%s.%N)
  [[ "$code" == 204 ]] || { say "$name: the PATCH answered $code"; return 1; }
  awk -v b="$size" -v s="$started" -v e="$ended" \
    'BEGIN { printf "{\"mbPerSec\":%.1f,\"seconds\":%.2f}\n", b / (e - s) / 1e6, e - s }' \
    >"$WORK/$name-whole.json"
}

run_large() {
  local name=$1 pid=$2 endpoint=$3 sampler rc=0
  sync
  sample_rss "$pid" "$WORK/$name-rss.kib" &
  sampler=$!
  run_bench "$name" "{\"endpoint\":\"$endpoint\",\"mode\":\"large\",\"file\":\"$WORK/large.bin\",\"chunkSize\":$CHUNK_BYTES}" large || rc=$?
  if ((rc == 0)); then
    say "large upload to $name in one PATCH (curl)"
    curl_whole "$name" "$endpoint" || rc=$?
  fi
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  return "$rc"
}

# A failed Airlock step: fatal, or n/a in the table (its results removed).
airlock_failed() { # step (start, small, large)
  [[ "$ALLOW_MISSING" == 1 ]] || die "Airlock's $1 step failed (BENCH_ALLOW_MISSING=1 shows it as n/a)"
  say "Airlock's $1 step failed: n/a (BENCH_ALLOW_MISSING=1)"
  case "$1" in
    start) AIRLOCK_OK=0 ;;
    small) rm -f "$WORK/airlock-small.json" ;;
    large) rm -f "$WORK/airlock-large.json" "$WORK/airlock-whole.json" "$WORK/airlock-rss.kib" ;;
  esac
}

say "making inputs: 180 KiB and $LARGE_MIB MiB of random bytes"
head -c $((180 * 1024)) /dev/urandom >"$WORK/small.jpg"
head -c $((LARGE_MIB * 1024 * 1024)) /dev/urandom >"$WORK/large.bin"
sync

start_tus_server
AIRLOCK_OK=1
start_airlock || airlock_failed start

small_json() {
  printf '{"endpoint":"%s","mode":"small","file":"%s","concurrency":%s,"count":%s}' \
    "$1" "$WORK/small.jpg" "$CONCURRENCY" "$SMALL_COUNT"
}
# The machine is shared: the small runs alternate between the servers for
# BENCH_ROUNDS rounds, and each server's median round goes in the table
# (every round's ratio is printed too).
ROUND_RATIOS=()
for ((round = 1; round <= ROUNDS; round++)); do
  run_bench tus "$(small_json "$TUS_ENDPOINT")" small || die "@tus/server small uploads failed"
  mv "$WORK/tus-small.json" "$WORK/tus-small-$round.json"
  if ((AIRLOCK_OK)); then
    if run_bench airlock "$(small_json "$AIRLOCK_ENDPOINT")" small; then
      mv "$WORK/airlock-small.json" "$WORK/airlock-small-$round.json"
      ROUND_RATIOS+=("$(awk -v a="$(jget "$WORK/airlock-small-$round.json" uploadsPerSec)" \
        -v t="$(jget "$WORK/tus-small-$round.json" uploadsPerSec)" 'BEGIN { printf "%.2f", a / t }')")
    else
      airlock_failed small
    fi
  fi
done
# The median round of server $1 becomes $WORK/$1-small.json.
median_round() {
  local name=$1 best
  best=$(for f in "$WORK/$name"-small-*.json; do
    [[ -f "$f" ]] && printf '%s %s\n' "$(jget "$f" uploadsPerSec)" "$f"
  done | sort -n | awk '{ rows[NR] = $2 } END { if (NR) print rows[int((NR + 1) / 2)] }')
  [[ -n "$best" ]] && cp "$best" "$WORK/$name-small.json"
}
median_round tus
((AIRLOCK_OK)) && median_round airlock
run_large tus "$TUS_PID" "$TUS_ENDPOINT" || die "@tus/server large upload failed"
if ((AIRLOCK_OK)); then
  run_large airlock "$AIRLOCK_PID" "$AIRLOCK_ENDPOINT" || airlock_failed large
fi
# Servers stopped and their data removed: an idle disk, and room, for dd.
for pid in "${PIDS[@]}"; do
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
PIDS=()
rm -rf "$WORK/tus-data" "$WORK/airlock-data" "$WORK/large.bin"

say "dd floor"
sync
dd_out="$(dd if=/dev/zero of="$WORK/dd.bin" bs=8M count=128 conv=fsync 2>&1 | tail -1)"
rm -f "$WORK/dd.bin"
# "1073741824 bytes (1.1 GB, 1.0 GiB) copied, 4.3 s, 249 MB/s": MB = 10^6, as bench.mjs.
DD_MBS="$(awk '{for (i = 1; i < NF; i++) if ($(i + 1) == "s,") printf "%.1f", $1 / 1e6 / $i}' <<<"$dd_out")"
[[ -n "$DD_MBS" ]] || die "cannot read dd's output: $dd_out"

val() { # server metric
  if [[ "$1" == airlock ]] && ((!AIRLOCK_OK)); then echo n/a; return; fi
  case "$2" in
    rss) [[ -f "$WORK/$1-rss.kib" ]] && awk '{printf "%.1f", $1 / 1024}' "$WORK/$1-rss.kib" || echo n/a ;;
    mbPerSec) jget "$WORK/$1-large.json" mbPerSec ;;
    wholeMbPerSec) jget "$WORK/$1-whole.json" mbPerSec ;;
    *) jget "$WORK/$1-small.json" "$2" ;;
  esac
}
ratio() { # a b
  awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else printf "n/a" }'
}

tus_version="$(node -p 'require(process.argv[1]).version' "$TUS_DIR/node_modules/@tus/server/package.json")"
T_UPS="$(val tus uploadsPerSec)" A_UPS="$(val airlock uploadsPerSec)"
T_MBS="$(val tus mbPerSec)" A_MBS="$(val airlock mbPerSec)"
T_WHOLE="$(val tus wholeMbPerSec)" A_WHOLE="$(val airlock wholeMbPerSec)"
cat <<EOF

| metric | @tus/server $tus_version | airlock | ratio |
| --- | ---: | ---: | --- |
| small: uploads/s ($SMALL_COUNT x 180 KiB, $CONCURRENCY in flight; median of $ROUNDS alternating rounds) | $T_UPS | $A_UPS | airlock/@tus-server $(ratio "$A_UPS" "$T_UPS") (rounds: ${ROUND_RATIOS[*]:-n/a}) |
| small: p50 ms | $(val tus p50ms) | $(val airlock p50ms) | |
| small: p99 ms | $(val tus p99ms) | $(val airlock p99ms) | |
| small: errors | $(val tus errors) | $(val airlock errors) | |
| large: MB/s ($LARGE_MIB MiB, 8 MiB PATCHes, bench.mjs) | $T_MBS | $A_MBS | airlock/dd $(ratio "$A_MBS" "$DD_MBS"), @tus-server/dd $(ratio "$T_MBS" "$DD_MBS") |
| large: MB/s ($LARGE_MIB MiB in one PATCH, curl) | $T_WHOLE | $A_WHOLE | airlock/dd $(ratio "$A_WHOLE" "$DD_MBS"), @tus-server/dd $(ratio "$T_WHOLE" "$DD_MBS") |
| large: max server RSS MiB | $(val tus rss) | $(val airlock rss) | |
| disk floor: dd 1 GiB bs=8M fsync, MB/s | $DD_MBS | | |

MB = 10^6 bytes; disk: $fstype under $CACHE.
EOF
