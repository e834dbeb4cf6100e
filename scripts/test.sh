#!/usr/bin/env bash
# `make test`: the whole suite against real PostgreSQL and Redis.
# Uses DATABASE_URL / REDIS_URL when set; otherwise the local servers on 127.0.0.1:5432 and :6379;
# where those are not running, throwaway ones started from installed binaries.
set -euo pipefail
PY=${PY:-.venv/bin/python}
tmp=""
cleanup() {
  if [ -n "$tmp" ]; then
    [ -f "$tmp/pg/postmaster.pid" ] && as_pg_user pg_ctl -D "$tmp/pg" -m immediate stop >/dev/null 2>&1 || true
    [ -f "$tmp/redis.pid" ] && kill "$(cat "$tmp/redis.pid")" 2>/dev/null || true
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
pg_bin() { command -v "$1" 2>/dev/null || ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | tail -1; }
as_pg_user() {
  # initdb and postgres refuse to run as root.
  if [ "$(id -u)" = 0 ]; then runuser -u "$PG_OS_USER" -- "$(pg_bin "$1")" "${@:2}"; else "$(pg_bin "$1")" "${@:2}"; fi
}

if [ -z "${DATABASE_URL:-}" ]; then
  if listening 127.0.0.1 5432; then
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/notifycenter"
  elif [ -n "$(pg_bin initdb)" ]; then
    tmp=${tmp:-$(mktemp -d)}; chmod 755 "$tmp"
    PG_OS_USER=$(id -un postgres 2>/dev/null || echo nobody)
    mkdir -p "$tmp/pg" && [ "$(id -u)" = 0 ] && chown "$PG_OS_USER" "$tmp/pg"
    echo "PostgreSQL is not running on 127.0.0.1:5432: starting a throwaway one on :55432"
    as_pg_user initdb -D "$tmp/pg" -U postgres --auth=trust -E UTF8 >/dev/null
    as_pg_user pg_ctl -D "$tmp/pg" -o "-p 55432 -k $tmp/pg -c listen_addresses=127.0.0.1 -c fsync=off" -w start >/dev/null
    export DATABASE_URL="postgres://postgres@127.0.0.1:55432/notifycenter"
  else
    echo "PostgreSQL is neither running on 127.0.0.1:5432 nor installed." >&2
    echo "Install it (Debian/Ubuntu: apt-get install postgresql) or set DATABASE_URL." >&2
    exit 2
  fi
fi

if [ -z "${REDIS_URL:-}" ]; then
  if listening 127.0.0.1 6379; then
    export REDIS_URL="redis://127.0.0.1:6379/15"
  elif command -v redis-server >/dev/null; then
    tmp=${tmp:-$(mktemp -d)}
    echo "Redis is not running on 127.0.0.1:6379: starting a throwaway one on :56379"
    redis-server --port 56379 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
      --pidfile "$tmp/redis.pid" --dir "$tmp" >/dev/null
    for _ in $(seq 50); do listening 127.0.0.1 56379 && break; sleep 0.1; done
    export REDIS_URL="redis://127.0.0.1:56379/15"
  else
    echo "Redis is neither running on 127.0.0.1:6379 nor installed." >&2
    echo "Install it (Debian/Ubuntu: apt-get install redis-server) or set REDIS_URL." >&2
    exit 2
  fi
fi

# The browser tests (tests/browser) drive Debian's Chromium through Playwright; Playwright's own
# browser download is not used. Fonts for the Chinese admin come with fonts-noto-cjk.
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Chromium is not installed: installing Debian's chromium and fonts-noto-cjk for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium fonts-noto-cjk >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q chromium fonts-noto-cjk >/dev/null; }
  else
    echo "The browser tests need Chromium: apt-get install chromium fonts-noto-cjk (as root), or set CHROMIUM." >&2
    exit 2
  fi
fi
export CHROMIUM

echo "testing against ${DATABASE_URL%%\?*} and $REDIS_URL"
# pytest's exit code 5 (no tests collected) fails here like any other failure.
"$PY" -m pytest "$@"
