#!/usr/bin/env bash
# Makes sure a Redis server answers on 127.0.0.1:6379, installing and
# starting one when none does. Used by .ci/run so a bare machine passes.
set -euo pipefail

ping() {
  if command -v redis-cli >/dev/null 2>&1; then
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1
  else
    # No client: speak RESP over bash's /dev/tcp.
    exec 3<>/dev/tcp/127.0.0.1/6379 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    local reply
    read -r -t 2 reply <&3 || true
    exec 3<&- 3>&-
    [[ "$reply" == +PONG* ]]
  fi
}

if ping; then
  exit 0
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis: installing redis-server" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
echo "redis: starting redis-server on 127.0.0.1:6379" >&2
dir=$(mktemp -d)
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
  --dir "$dir" --logfile "$dir/redis.log"
for _ in $(seq 1 50); do
  ping && exit 0
  sleep 0.1
done
echo "redis: server did not answer on 127.0.0.1:6379" >&2
exit 1
