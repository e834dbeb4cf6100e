#!/usr/bin/env bash
# Runs web, worker (with embedded beat) together; Ctrl-C stops them all.
set -uo pipefail
PY=${PY:-.venv/bin/python}
PORT=${PORT:-8000}
CELERY="$(dirname "$PY")/celery"

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "stopping…"
  kill "${pids[@]}" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null
  exit 0
}
trap stop INT TERM EXIT

mkdir -p "$NOTIFYCENTER_DATA_DIR/queue/out" "$NOTIFYCENTER_DATA_DIR/queue/processed"

"$PY" manage.py runserver "127.0.0.1:$PORT" --noreload &
pids+=($!)
# Sandbox channel accounts send here (FAKE_PROVIDERS_URL).
"$PY" manage.py fakeproviders --port "${FAKE_PROVIDERS_PORT:-8081}" &
pids+=($!)
# One worker with embedded beat (-B) on kombu's filesystem transport; beat's periodic tasks are
# the reminder scan and the outbox scan (settings.CELERY_BEAT_SCHEDULE).
"$CELERY" -A notifycenter worker -B --loglevel INFO --concurrency 2 \
  --schedule "$NOTIFYCENTER_DATA_DIR/celerybeat-schedule" &
pids+=($!)

sleep 3
cat <<MSG

notifycenter is running (data in $NOTIFYCENTER_DATA_DIR):
  admin       http://127.0.0.1:$PORT/admin/   login: $(cat "$NOTIFYCENTER_DATA_DIR/admin-login.txt" | tr ' ' '/')
  API key     $(cat "$NOTIFYCENTER_DATA_DIR/dev-api-key")
  API docs    http://127.0.0.1:$PORT/api/docs/
  health      http://127.0.0.1:$PORT/healthz
  sandbox     http://127.0.0.1:${FAKE_PROVIDERS_PORT:-8081}/_calls   (what the fake WeChat and WeCom received)
Ctrl-C stops everything.

MSG
# If any one of them exits, stop the rest: half a system is worse than none.
wait -n "${pids[@]}"
echo "a process exited; stopping the others" >&2
stop
