#!/usr/bin/env bash
# CI (issue 13): `make run` and `make test` leave nothing behind. `git status --short` is the same
# after each as before, and no `_kombu.binding*` key stays in the test Redis database.
#   scripts/check_clean.sh run     start `make run` on spare ports, wait for /healthz, stop it
#   scripts/check_clean.sh test    check after `make test` (run it first)
set -euo pipefail
cd "$(dirname "$0")/.."
before=$(git status --short)

if [ "${1:-}" = run ]; then
  port=${PORT:-18000}
  setsid make run PORT="$port" FAKE_PROVIDERS_PORT="${FAKE_PROVIDERS_PORT:-18081}" >/tmp/check-clean-run.log 2>&1 &
  pid=$!
  for _ in $(seq 300); do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.5
  done
  ok=$(curl -fs "http://127.0.0.1:$port/healthz" || true)
  kill -INT -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -z "$ok" ]; then echo "make run did not answer /healthz:"; tail -30 /tmp/check-clean-run.log; exit 1; fi
fi

if [ "${1:-}" = test ]; then
  redis_url=${REDIS_URL:-redis://127.0.0.1:6379/15}
  left=$(.venv/bin/python -c "import redis,sys; r=redis.Redis.from_url(sys.argv[1]); print(len(list(r.scan_iter('_kombu.binding*'))))" "$redis_url")
  if [ "$left" != 0 ]; then echo "make test left $left _kombu.binding* keys in $redis_url"; exit 1; fi
fi

after=$(git status --short)
if [ "$after" != "$before" ]; then
  echo "the repository changed (git status --short):"; diff <(echo "$before") <(echo "$after") || true
  exit 1
fi
echo "clean: git status --short unchanged${1:+ after make $1}"
