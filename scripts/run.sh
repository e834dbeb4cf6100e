#!/usr/bin/env bash
# Runs web, worker (with embedded beat) and the fake providers together; Ctrl-C stops them all.
# The web server is the production one (uvicorn; static files through whitenoise); every runtime
# file (SQLite, queue folders, static files, beat schedule) is under $NOTIFYCENTER_DATA_DIR.
set -uo pipefail
PY=${PY:-.venv/bin/python}
PORT=${PORT:-8000}
FAKE=${FAKE_PROVIDERS_PORT:-8081}
BIN="$(dirname "$PY")"
WEB_WORKERS=${WEB_WORKERS:-2}

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "stopping…"
  kill "${pids[@]}" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null
  exit 0
}
trap stop INT TERM EXIT

mkdir -p "$NOTIFYCENTER_DATA_DIR/queue/out" "$NOTIFYCENTER_DATA_DIR/queue/processed" \
  "$NOTIFYCENTER_DATA_DIR/queue/control" "$NOTIFYCENTER_DATA_DIR/tmp"
# kombu's filesystem transport moves each message it takes into the temporary folder before
# reading it: that folder too stays in the data folder.
export TMPDIR="$NOTIFYCENTER_DATA_DIR/tmp"
"$PY" manage.py collectstatic --noinput -v0

# Django under ASGI runs each sync view in one thread per process, so two processes serve two
# requests at once on these 2 cores; the backlog (2048) holds the rest instead of resetting them.
# On PostgreSQL, a pool of at most 8 connections per web process (settings.py says why). Ctrl-C cuts
# open event streams after 5 s (they never end on their own; deploy/notifycenter-web.service).
DATABASE_POOL_MAX_SIZE=${DATABASE_POOL_MAX_SIZE:-8} "$BIN/uvicorn" notifycenter.asgi:application --host 127.0.0.1 --port "$PORT" --workers "$WEB_WORKERS" \
  --backlog 2048 --no-access-log --lifespan off --timeout-graceful-shutdown 5 &
pids+=($!)
# Sandbox channel accounts send here (FAKE_PROVIDERS_URL).
# It pushes SMS status reports and WeChat events back to the center's callbacks, as the providers do.
"$PY" manage.py fakeproviders --port "$FAKE" --receipts-to "http://127.0.0.1:$PORT" &
pids+=($!)
# One worker with embedded beat (-B) on kombu's filesystem transport (polled every 10 ms, see
# settings.CELERY_BROKER_TRANSPORT_OPTIONS); beat's periodic tasks are the reminder scan and the
# outbox scan (settings.CELERY_BEAT_SCHEDULE). Provider sends of a task go out together on the
# worker process's event loop (channels/flight.py; PROVIDER_EVENT_LOOP=0 sends one after the other).
"$BIN/celery" -A notifycenter worker -B --loglevel INFO --concurrency 2 \
  --schedule "$NOTIFYCENTER_DATA_DIR/celerybeat-schedule" &
pids+=($!)

for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
cat <<MSG

notifycenter is running (data in $NOTIFYCENTER_DATA_DIR):
  console     http://127.0.0.1:$PORT/admin/   login: $(tr ' ' '/' < "$NOTIFYCENTER_DATA_DIR/admin-login.txt")
  API key     $(cat "$NOTIFYCENTER_DATA_DIR/dev-api-key")
  API docs    http://127.0.0.1:$PORT/api/docs/  (ReDoc: /api/redoc/)
  health      http://127.0.0.1:$PORT/healthz
  fake providers on http://127.0.0.1:$FAKE (the sandbox channel accounts send there):
    /wechat   WeChat official-account template and mini-program subscribe messages
    /wecom    WeCom app messages and group robot
    /jpush    JPush app push
    /aliyun   Aliyun SMS
    /tencent  Tencent Cloud SMS
    /_calls   everything they received
Ctrl-C stops everything.

MSG
# If any one of them exits, stop the rest: half a system is worse than none. Ctrl-C reaches
# them too (they end with 0, or 130 for SIGINT): that is no failure to report.
wait -n "${pids[@]}"
code=$?
if [ "$code" -ne 0 ] && [ "$code" -ne 130 ]; then
  echo "a process exited with status $code; stopping the others" >&2
fi
stop
