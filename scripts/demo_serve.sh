#!/usr/bin/env bash
# Serve a bundle and ask it twice, as users do: tritonclient over KServe v2, then curl on /predict.
#
#   scripts/demo_serve.sh BUNDLE IMAGE OUTDIR
#
# Starts `sal-runtime serve` on a free loopback port, waits for /v2/health/ready, writes
# OUTDIR/triton_saliency.{npy,png} + triton.json (scripts/demo_triton_request.py) and
# OUTDIR/curl_saliency.png, then stops the server with SIGTERM and checks it exits 0.
# Both requests carry the same seed, so both maps equal Predictor.predict([IMAGE], seed=SEED).
# The server is never left running: any failure (or Ctrl-C) stops it on the way out.
# Needs sal-runtime and python (the project's .venv) first on PATH, and curl.
# Knobs: DEMO_SERVE_READY_TIMEOUT (s, default 120), DEMO_SERVE_STOP_TIMEOUT (s, default 45;
# the server drains for up to 30 s), DEMO_SERVE_SEED (default 0).
set -euo pipefail

if [[ $# -ne 3 ]]; then
    echo "usage: $0 BUNDLE IMAGE OUTDIR" >&2
    exit 2
fi
BUNDLE=$1 IMAGE=$2 OUT=$3
READY_TIMEOUT=${DEMO_SERVE_READY_TIMEOUT:-120}
STOP_TIMEOUT=${DEMO_SERVE_STOP_TIMEOUT:-45}
SEED=${DEMO_SERVE_SEED:-0}
HERE=$(cd "$(dirname "$0")" && pwd)
LOG=$OUT/server.log
SERVER_PID=

# Microseconds on the wall clock (EPOCHREALTIME, bash 5; SECONDS only ticks whole seconds).
now_us() { echo "${EPOCHREALTIME/[.,]/}"; }

fail() {
    echo "error: $*" >&2
    if [[ -s $LOG ]]; then
        echo "-- last lines of $LOG:" >&2
        tail -n 20 "$LOG" >&2
    fi
    exit 1
}

# Runs on every exit, including set -e failures and signals: a server still running gets SIGTERM,
# then SIGKILL if it has not gone after 10 s.
stop_leftover_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || return 0
    local i
    for i in $(seq 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
}
trap stop_leftover_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for knob in READY_TIMEOUT STOP_TIMEOUT SEED; do
    [[ ${!knob} =~ ^[0-9]+$ ]] || fail "DEMO_SERVE_$knob must be a whole number, got '${!knob}'"
done
for tool in sal-runtime python curl; do
    command -v "$tool" >/dev/null || fail "$tool is not on PATH (run through 'make demo', or put .venv/bin first on PATH)"
done
[[ -f $IMAGE ]] || fail "image $IMAGE does not exist"
mkdir -p "$OUT"
# Answers from an earlier run must not pass for this run's.
rm -f "$LOG" "$OUT/server.pid" "$OUT"/triton_saliency.* "$OUT/triton.json" "$OUT"/curl_saliency.png*

PORT=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT

sal-runtime serve --engine "$BUNDLE" --port "$PORT" --log-level warning >"$LOG" 2>&1 &
SERVER_PID=$!
started=$(now_us)
echo "$SERVER_PID" >"$OUT/server.pid"
echo "server: pid $SERVER_PID on $URL (log: $LOG)"

# Readiness: /v2/health/ready answers 503 while the predictor loads and warms up, 200 after.
deadline=$((started + READY_TIMEOUT * 1000000))
until curl -fsS -o /dev/null --max-time 2 "$URL/v2/health/ready" 2>/dev/null; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        code=0
        wait "$SERVER_PID" || code=$?
        SERVER_PID=
        fail "the server exited (code $code) before it was ready"
    fi
    (($(now_us) < deadline)) || fail "the server was not ready after ${READY_TIMEOUT}s ($URL/v2/health/ready)"
    sleep 0.2
done
elapsed_ms=$((($(now_us) - started) / 1000))
echo "server: ready after $((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000)))s"

python "$HERE/demo_triton_request.py" "127.0.0.1:$PORT" "$IMAGE" "$OUT" --seed "$SEED" \
    || fail "the tritonclient request failed"

# curl on /predict: the image file as the raw body, an 8-bit PNG back. Written to a temporary
# name first so a failed request never leaves a file that looks like an answer.
status=$(curl -sS --max-time 120 --data-binary "@$IMAGE" -o "$OUT/curl_saliency.png.part" -w '%{http_code}' \
    "$URL/predict?seed=$SEED") || fail "curl could not reach $URL/predict"
if [[ $status != 200 ]]; then
    body=$(head -c 500 "$OUT/curl_saliency.png.part")
    rm -f "$OUT/curl_saliency.png.part"
    fail "POST /predict answered $status: $body"
fi
mv "$OUT/curl_saliency.png.part" "$OUT/curl_saliency.png"
echo "curl: POST /predict?seed=$SEED → $OUT/curl_saliency.png"

# SIGTERM: the server closes its listener, drains, and must exit 0.
kill -TERM "$SERVER_PID"
deadline=$(($(now_us) + STOP_TIMEOUT * 1000000))
while kill -0 "$SERVER_PID" 2>/dev/null; do
    (($(now_us) < deadline)) || fail "the server did not exit within ${STOP_TIMEOUT}s of SIGTERM"
    sleep 0.1
done
code=0
wait "$SERVER_PID" || code=$?
SERVER_PID=
((code == 0)) || fail "the server exited with code $code after SIGTERM (expected 0)"
echo "server: stopped by SIGTERM, exit code 0"
