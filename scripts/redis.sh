#!/usr/bin/env bash
# Redis for tests and local runs.
#   scripts/redis.sh ensure            make sure one answers on 127.0.0.1:6379
#                                      (installs redis-server with apt if missing)
#   scripts/redis.sh start PORT DIR    start a private one (for fault tests)
set -euo pipefail

have_server() { command -v redis-server >/dev/null && command -v redis-cli >/dev/null; }
install() {
  have_server && return
  echo "redis: installing redis-server (apt)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}
wait_ping() {
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  echo "redis: nothing answers on 127.0.0.1:$1" >&2
  return 1
}

case "${1:-}" in
  ensure)
    install
    if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
      echo "redis: already running on 127.0.0.1:6379"
    else
      redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
      wait_ping 6379
      echo "redis: started on 127.0.0.1:6379"
    fi
    ;;
  start)
    port="${2:?port}"; dir="${3:?dir}"
    install
    mkdir -p "$dir"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
      --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
    wait_ping "$port"
    ;;
  *)
    echo "usage: scripts/redis.sh ensure | start PORT DIR" >&2
    exit 2
    ;;
esac
