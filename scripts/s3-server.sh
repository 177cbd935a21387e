#!/usr/bin/env bash
# Runs a real S3 server for the tests: a single Garage node on 127.0.0.1
# (Garage is installed by scripts/install-s3-server.sh).
#
# Usage:
#   eval "$(scripts/s3-server.sh start)"   # start (or reuse) it; prints the
#                                          # AIRLOCK_TEST_S3_* exports
#   scripts/s3-server.sh env               # the exports of the running node
#   scripts/s3-server.sh status            # exit 0 when it is up and healthy
#   scripts/s3-server.sh stop
#
# State (config, keys, metadata, data, pid, log) lives in
# ${AIRLOCK_CACHE:-~/.cache/airlock}/garage-test (garage-test-PORT for a
# non-default port); each fresh start wipes the metadata and data. Ports:
# AIRLOCK_TEST_S3_PORT (S3 API, default 39000), +1 for RPC, +3 for the admin
# API, all on 127.0.0.1 only — uncommon ports, so a developer's own Garage on
# 3900-3903 is left alone. AIRLOCK_GARAGE_BIN overrides the binary.
# Only the export lines go to stdout; progress and errors go to stderr.
set -euo pipefail

CACHE="${AIRLOCK_CACHE:-$HOME/.cache/airlock}"
GARAGE="${AIRLOCK_GARAGE_BIN:-$CACHE/tools/bin/garage}"
S3_PORT="${AIRLOCK_TEST_S3_PORT:-39000}"
if ! [[ "$S3_PORT" =~ ^[0-9]+$ ]] || ((S3_PORT < 1024 || S3_PORT > 65532)); then
  echo "s3-server: error: AIRLOCK_TEST_S3_PORT must be a port in 1024-65532" >&2
  exit 2
fi
RPC_PORT=$((S3_PORT + 1))
ADMIN_PORT=$((S3_PORT + 3))
# One node per state dir: a node on other ports gets its own.
STATE="$CACHE/garage-test"
[[ "$S3_PORT" == 39000 ]] || STATE="$STATE-$S3_PORT"
CONF="$STATE/garage.toml"
PIDFILE="$STATE/garage.pid"
LOG="$STATE/garage.log"
ENVFILE="$STATE/env"
BUCKET="airlock-test"
REGION="garage"
READY_TIMEOUT=30
# A developer's own Garage settings must not leak into this node or its CLI.
unset GARAGE_RPC_HOST GARAGE_RPC_SECRET GARAGE_RPC_SECRET_FILE GARAGE_CONFIG_FILE \
  GARAGE_ADMIN_TOKEN GARAGE_ADMIN_TOKEN_FILE GARAGE_METRICS_TOKEN GARAGE_METRICS_TOKEN_FILE

say() { printf 's3-server: %s\n' "$*" >&2; }
die() {
  printf 's3-server: error: %s\n' "$*" >&2
  exit 1
}

# `len` random bytes as lowercase hex.
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# The pid of our Garage if it is alive (and really ours: its command line
# names our config), else nothing.
running_pid() {
  [[ -f "$PIDFILE" ]] || return 0
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CONF" || return 0
  echo "$pid"
}

# Whether the admin API says the node is healthy.
healthy() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
    "http://127.0.0.1:$ADMIN_PORT/health" 2>/dev/null || true)"
  [[ "$code" == 200 ]]
}

# Whether the default bucket exists (the CLI reaches the node over RPC).
bucket_ready() {
  "$GARAGE" -c "$CONF" bucket info "$BUCKET" >/dev/null 2>&1
}

# Whether something listens on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

log_tail() {
  if [[ -f "$LOG" ]]; then
    say "last lines of $LOG:"
    tail -n 30 "$LOG" >&2
  fi
}

# Stops process $1: TERM, then KILL after 10 s.
terminate() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "garage $pid did not stop on TERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
}

stop() {
  local pid
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$PIDFILE"
    say "not running"
    return 0
  fi
  terminate "$pid"
  say "stopped garage $pid"
}

start() {
  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" && -f "$ENVFILE" ]] && healthy && bucket_ready; then
    say "reusing garage $pid on 127.0.0.1:$S3_PORT"
    cat "$ENVFILE"
    return 0
  fi
  if [[ -n "$pid" ]]; then
    say "garage $pid is not healthy: restarting it"
    stop
  fi

  [[ -x "$GARAGE" ]] || die "$GARAGE is missing: run scripts/install-s3-server.sh first"
  for port in "$S3_PORT" "$RPC_PORT" "$ADMIN_PORT"; do
    if port_busy "$port"; then
      die "127.0.0.1:$port is in use by another process; set AIRLOCK_TEST_S3_PORT to another base port"
    fi
  done

  rm -rf "$STATE/meta" "$STATE/data"
  mkdir -p "$STATE/meta" "$STATE/data"
  local access_key secret_key
  access_key="GK$(random_hex 12)"
  secret_key="$(random_hex 32)"
  (
    umask 077
    cat >"$CONF" <<EOF
# Written by scripts/s3-server.sh: a throwaway single node for the tests.
metadata_dir = "$STATE/meta"
data_dir = "$STATE/data"
db_engine = "sqlite"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(random_hex 32)"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$S3_PORT"

[admin]
api_bind_addr = "127.0.0.1:$ADMIN_PORT"
EOF
    cat >"$ENVFILE" <<EOF
export AIRLOCK_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export AIRLOCK_TEST_S3_BUCKET=$BUCKET
export AIRLOCK_TEST_S3_REGION=$REGION
export AIRLOCK_TEST_S3_ACCESS_KEY_ID=$access_key
export AIRLOCK_TEST_S3_SECRET_ACCESS_KEY=$secret_key
EOF
  )

  # In its own session, with no tie to our stdout (the caller's `$(…)`
  # would wait for it) nor to the lock on fd 9.
  : >"$LOG"
  GARAGE_DEFAULT_ACCESS_KEY="$access_key" \
    GARAGE_DEFAULT_SECRET_KEY="$secret_key" \
    GARAGE_DEFAULT_BUCKET="$BUCKET" \
    RUST_LOG="${GARAGE_LOG:-garage=info}" \
    setsid "$GARAGE" -c "$CONF" server --single-node --default-bucket \
    </dev/null >>"$LOG" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PIDFILE"

  local deadline=$((SECONDS + READY_TIMEOUT))
  until healthy && bucket_ready; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PIDFILE"
      log_tail
      die "garage exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      log_tail
      terminate "$pid"
      die "garage was not ready within ${READY_TIMEOUT}s"
    fi
    sleep 0.1
  done
  say "garage $pid ready on 127.0.0.1:$S3_PORT (bucket $BUCKET, log $LOG)"
  cat "$ENVFILE"
}

status() {
  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" ]] && healthy && bucket_ready; then
    say "garage $pid is up on 127.0.0.1:$S3_PORT"
  else
    say "not running (or not healthy)"
    return 1
  fi
}

mkdir -p "$STATE"
# One start/stop at a time (parallel test runs share the node).
exec 9>"$STATE/lock"
if command -v flock >/dev/null; then
  flock 9
fi

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env)
    status && cat "$ENVFILE"
    ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
