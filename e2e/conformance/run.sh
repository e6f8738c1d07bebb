#!/usr/bin/env bash
# Runs the protocol conformance suite against a fresh `dolphin dev` server.
#
# Usage: e2e/conformance/run.sh [pytest arguments...]
#
# Environment:
#   DOLPHIN_BIN    the server binary (default: the checkout's target/debug/dolphin)
#   DOLPHIN_CACHE  where the virtualenv lives, outside the checkout (default: ~/.cache/dolphin)
#   PYTHON         the interpreter that creates the virtualenv (default: python3.11, else python3)
#
# The server gets a free port and a temporary data folder, both thrown away on exit, so a run
# never sees the data of an earlier one. The script exits with pytest's status.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DOLPHIN_BIN="${DOLPHIN_BIN:-$ROOT/target/debug/dolphin}"
VENV="${DOLPHIN_CACHE:-$HOME/.cache/dolphin}/conformance-venv"

# Pinned once here; bumping one is a deliberate change, not something a fresh machine does.
PINS=(pytest==8.4.2 websockets==15.0.1 PyJWT==2.10.1 msgpack==1.1.0)

# Generous because a debug build opens its shards and elects their Raft leaders before serving.
HEALTH_TIMEOUT_S=60

log() {
    printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

die() {
    printf '[%s] error: %s\n' "$(date +%H:%M:%S)" "$*" >&2
    exit 1
}

# Prints a TCP port on 127.0.0.1 that nothing listens on now, drawn below Linux's ephemeral
# range (32768+) so that an outgoing connection cannot take it before the server binds it.
free_port() {
    local port tries=0
    while ((tries < 200)); do
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
        tries=$((tries + 1))
    done
    die "found no free TCP port on 127.0.0.1 after 200 tries"
}

ensure_venv() {
    local python="${PYTHON:-python3.11}"
    command -v "$python" >/dev/null || python=python3
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating the virtualenv $VENV"
        "$python" -m venv "$VENV"
    fi

    # `pip freeze` lists names as the index spells them; compare case-insensitively.
    local frozen missing=()
    frozen="$("$VENV/bin/python" -m pip freeze 2>/dev/null | tr '[:upper:]' '[:lower:]')"
    for pin in "${PINS[@]}"; do
        grep -qxF "$(tr '[:upper:]' '[:lower:]' <<<"$pin")" <<<"$frozen" || missing+=("$pin")
    done
    if ((${#missing[@]} > 0)); then
        log "installing ${missing[*]}"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
    fi
}

SERVER_PID=""
DATA_DIR=""

cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        # Bounded: a server that ignores SIGTERM for 10 s gets SIGKILL.
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ -n "$DATA_DIR" ]]; then
        rm -rf "$DATA_DIR"
    fi
}
trap cleanup EXIT

[[ -x "$DOLPHIN_BIN" ]] ||
    die "no server binary at $DOLPHIN_BIN; build it with 'cargo build -p dolphin'" \
        "or set DOLPHIN_BIN"

ensure_venv

DATA_DIR="$(mktemp -d "${TMPDIR:-/tmp}/dolphin-conformance.XXXXXX")"
PORT="$(free_port)"
SERVER_LOG="$DATA_DIR/server.log"
log "starting $DOLPHIN_BIN dev on 127.0.0.1:$PORT (log: $SERVER_LOG)"
"$DOLPHIN_BIN" dev --listen "127.0.0.1:$PORT" --data "$DATA_DIR/data" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

healthz() {
    curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz" || true
}

deadline=$((SECONDS + HEALTH_TIMEOUT_S))
until [[ "$(healthz)" == 200 ]]; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        tail -n 20 "$SERVER_LOG" >&2 || true
        die "the server exited before /healthz answered 200; its log's last lines are above"
    fi
    if ((SECONDS >= deadline)); then
        tail -n 20 "$SERVER_LOG" >&2 || true
        die "timed out after ${HEALTH_TIMEOUT_S}s waiting for /healthz on port $PORT;" \
            "the server is probably still electing shard leaders or failed to bind"
    fi
    sleep 0.2
done

SECRET_FILE="$DATA_DIR/data/jwt-secret"
[[ -s "$SECRET_FILE" ]] || die "the server answers /healthz but wrote no secret at $SECRET_FILE"

set +e
# DOLPHIN_BIN goes on for the fixture that starts a second server, one whose direct messages
# need friendship (see conftest.py); it starts only if a selected test needs it.
DOLPHIN_URL="ws://127.0.0.1:$PORT" \
    DOLPHIN_JWT_SECRET="$(<"$SECRET_FILE")" \
    DOLPHIN_BIN="$DOLPHIN_BIN" \
    "$VENV/bin/python" -m pytest -p no:cacheprovider -ra --tb=short "$HERE" "$@"
status=$?
set -e

if ((status != 0)); then
    log "pytest failed with status $status; the last lines of the server's log follow"
    tail -n 20 "$SERVER_LOG" >&2 || true
fi
exit "$status"
