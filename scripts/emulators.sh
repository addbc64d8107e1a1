#!/usr/bin/env bash
# Installs (when missing) and starts the storage emulators the test suite talks to: moto for S3 (from
# PyPI) and Azurite for Azure Blob (from npm). Everything goes into the git-ignored .emulators/ folder
# at the repository root and is reused on the next run. Every emulator listens on 127.0.0.1 only.
#
# Usage:
#   source scripts/emulators.sh; strata_emulators_start    # start; an EXIT trap stops them again
#   bash scripts/emulators.sh run -- CMD ARGS...            # start, run CMD, stop, exit with CMD's status
#   bash scripts/emulators.sh install                       # only install
#
# strata_emulators_start exports STRATA_TEST_EMULATORS=1, STRATA_TEST_S3_ENDPOINT,
# STRATA_TEST_S3_BUCKET, STRATA_TEST_AZURE_ENDPOINT (Azurite's blob base URL, without the account) and
# STRATA_TEST_AZURE_CONTAINER. strata_emulators_stop kills exactly the processes it started (idempotent).
#
# Safe to source from a script running under `set -euo pipefail`; sourcing changes no shell option.

STRATA_EMU_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STRATA_EMU_DIR="$STRATA_EMU_ROOT/.emulators"
STRATA_EMU_LOGS="$STRATA_EMU_DIR/logs"
STRATA_EMU_VENV="$STRATA_EMU_DIR/venv"
STRATA_EMU_NODE="$STRATA_EMU_DIR/node"
STRATA_EMU_AZURITE_BIN="$STRATA_EMU_NODE/node_modules/.bin/azurite-blob"
# Versions checked for conditional writes and races (see shared EMULATORS.md): moto 5.x, Azurite 3.x.
STRATA_EMU_MOTO_REQ=("moto>=5,<6" "flask" "flask-cors")
STRATA_EMU_AZURITE_REQ="azurite@3"
STRATA_EMU_BUCKET="strata-test"
STRATA_EMU_CONTAINER="strata-test"
STRATA_EMU_MOTO_PID="${STRATA_EMU_MOTO_PID:-}"
STRATA_EMU_AZURITE_PID="${STRATA_EMU_AZURITE_PID:-}"

_strata_emu_say() { echo "emulators: $*" >&2; }

# --- install ---------------------------------------------------------------------------------------

_strata_emu_moto_ok() {
    [[ -x "$STRATA_EMU_VENV/bin/moto_server" && -x "$STRATA_EMU_VENV/bin/python" ]] &&
        "$STRATA_EMU_VENV/bin/python" -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1
}

_strata_emu_azurite_ok() {
    [[ -e "$STRATA_EMU_AZURITE_BIN" ]] &&
        node "$STRATA_EMU_AZURITE_BIN" --version >/dev/null 2>&1
}

_strata_emu_install_moto() {
    if _strata_emu_moto_ok; then
        _strata_emu_say "moto: already installed in .emulators/venv"
        return 0
    fi
    local t0=$SECONDS
    _strata_emu_say "moto: installing into .emulators/venv (pip, about 20 s; log .emulators/logs/pip.log)"
    rm -rf "$STRATA_EMU_VENV"
    if ! { python3 -m venv "$STRATA_EMU_VENV" &&
        "$STRATA_EMU_VENV/bin/python" -m pip install --disable-pip-version-check \
            "${STRATA_EMU_MOTO_REQ[@]}"; } >"$STRATA_EMU_LOGS/pip.log" 2>&1; then
        _strata_emu_say "moto: install FAILED; last lines of .emulators/logs/pip.log:"
        tail -n 20 "$STRATA_EMU_LOGS/pip.log" >&2 || true
        return 1
    fi
    if ! _strata_emu_moto_ok; then
        _strata_emu_say "moto: installed but moto_server does not work; see .emulators/logs/pip.log"
        return 1
    fi
    _strata_emu_say "moto: installed in $((SECONDS - t0)) s"
}

_strata_emu_install_azurite() {
    if _strata_emu_azurite_ok; then
        _strata_emu_say "azurite: already installed in .emulators/node"
        return 0
    fi
    local t0=$SECONDS
    _strata_emu_say "azurite: installing into .emulators/node (npm, about 30 s; log .emulators/logs/npm.log)"
    rm -rf "$STRATA_EMU_NODE"
    mkdir -p "$STRATA_EMU_NODE"
    if ! npm install --prefix "$STRATA_EMU_NODE" --no-audit --no-fund --no-save \
        "$STRATA_EMU_AZURITE_REQ" >"$STRATA_EMU_LOGS/npm.log" 2>&1; then
        _strata_emu_say "azurite: install FAILED; last lines of .emulators/logs/npm.log:"
        tail -n 20 "$STRATA_EMU_LOGS/npm.log" >&2 || true
        return 1
    fi
    if ! _strata_emu_azurite_ok; then
        _strata_emu_say "azurite: installed but azurite-blob does not work; see .emulators/logs/npm.log"
        return 1
    fi
    _strata_emu_say "azurite: installed in $((SECONDS - t0)) s"
}

# Best effort: the benchmark compares against rclone when it is on PATH. Never fails.
_strata_emu_rclone() {
    if ! command -v rclone >/dev/null 2>&1 && [[ "$(id -u 2>/dev/null || echo 1)" == 0 ]] &&
        command -v apt-get >/dev/null 2>&1; then
        local t0=$SECONDS log="$STRATA_EMU_LOGS/apt.log"
        _strata_emu_say "rclone: installing with apt-get (log .emulators/logs/apt.log)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q rclone >>"$log" 2>&1 ||
            { DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1 &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q rclone >>"$log" 2>&1; } ||
            true
        _strata_emu_say "rclone: apt-get took $((SECONDS - t0)) s"
    fi
    if command -v rclone >/dev/null 2>&1; then
        _strata_emu_say "rclone: available ($(command -v rclone)); the benchmark can compare against it"
    else
        _strata_emu_say "rclone: NOT available; the benchmark skips its rclone comparison"
    fi
    return 0
}

strata_emulators_install() {
    mkdir -p "$STRATA_EMU_LOGS" || return 1
    command -v python3 >/dev/null 2>&1 || { _strata_emu_say "python3 is missing"; return 1; }
    command -v node >/dev/null 2>&1 || { _strata_emu_say "node is missing"; return 1; }
    command -v npm >/dev/null 2>&1 || { _strata_emu_say "npm is missing"; return 1; }
    # Serialize concurrent installs into the same folder (two test runs at once).
    (
        if command -v flock >/dev/null 2>&1; then flock 9 || true; fi
        _strata_emu_install_moto && _strata_emu_install_azurite
    ) 9>"$STRATA_EMU_DIR/install.lock" || return 1
    _strata_emu_rclone
}

# --- start / stop ----------------------------------------------------------------------------------

_strata_emu_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# _strata_emu_wait NAME PID PORT LOG: wait until PORT accepts connections (60 s at most).
_strata_emu_wait() {
    local name=$1 pid=$2 port=$3 log=$4 i
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            _strata_emu_say "$name: process $pid exited during start-up; last lines of $log:"
            tail -n 30 "$log" >&2 || true
            return 1
        fi
        if (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    _strata_emu_say "$name: port 127.0.0.1:$port did not accept connections within 60 s; last lines of $log:"
    tail -n 30 "$log" >&2 || true
    return 1
}

# _strata_emu_azure_req create|list ENDPOINT CONTAINER: a SharedKey-signed container request against
# Azurite's well-known development account. Prints the HTTP status; exits 0 on success.
_strata_emu_azure_req() {
    python3 - "$@" <<'PY'
import base64, hashlib, hmac, sys, time, urllib.error, urllib.request
from email.utils import formatdate

op, endpoint, container = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]
account = "devstoreaccount1"
key = base64.b64decode(
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
if op == "create":
    method, query, ok = "PUT", {"restype": "container"}, (201, 409)  # 409: already exists
elif op == "list":
    method, query, ok = "GET", {"restype": "container", "comp": "list"}, (200,)
else:
    sys.exit("unknown operation " + op)

headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
body = None
content_length = content_type = ""
if method == "PUT":
    # urllib adds a Content-Type to any request with a body; send one ourselves so it is signed.
    body, content_type = b"", "application/octet-stream"
    headers["Content-Type"] = content_type
    headers["Content-Length"] = "0"  # signed as "" when zero (versions 2015-02-21 and later)
path = "/" + account + "/" + container  # path-style emulator URL: the account is part of the path
canon_headers = "".join(f"{k}:{headers[k]}\n" for k in sorted(h for h in headers if h.startswith("x-ms-")))
# The canonicalized resource is /ACCOUNT + the URL path, so the account appears twice.
canon_resource = "/" + account + path + "".join(f"\n{k}:{query[k]}" for k in sorted(query))
string_to_sign = "\n".join([method, "", "", content_length, "", content_type, "", "", "", "", "", ""])
string_to_sign += "\n" + canon_headers + canon_resource
sig = base64.b64encode(hmac.new(key, string_to_sign.encode(), hashlib.sha256).digest()).decode()
headers["Authorization"] = f"SharedKey {account}:{sig}"

url = endpoint + path + "?" + "&".join(f"{k}={v}" for k, v in query.items())
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
status, detail = None, ""
for attempt in range(20):
    try:
        with opener.open(urllib.request.Request(url, data=body, method=method, headers=headers), timeout=10) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status, detail = e.code, e.read().decode(errors="replace")[:500]
    except OSError as e:  # not listening yet, reset while starting
        status, detail = None, str(e)
        time.sleep(0.25)
        continue
    break
print(status)
if status not in ok:
    sys.stderr.write(f"{method} {url} -> {status} {detail}\n")
    sys.exit(1)
PY
}

strata_emulators_stop() {
    local pid i
    for pid in ${STRATA_EMU_MOTO_PID:-} ${STRATA_EMU_AZURITE_PID:-}; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in ${STRATA_EMU_MOTO_PID:-} ${STRATA_EMU_AZURITE_PID:-}; do
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    STRATA_EMU_MOTO_PID=""
    STRATA_EMU_AZURITE_PID=""
    unset STRATA_TEST_EMULATORS STRATA_TEST_S3_ENDPOINT STRATA_TEST_S3_BUCKET \
        STRATA_TEST_AZURE_ENDPOINT STRATA_TEST_AZURE_CONTAINER
    return 0
}

strata_emulators_start() {
    if [[ -n "${STRATA_EMU_MOTO_PID:-}${STRATA_EMU_AZURITE_PID:-}" ]]; then
        _strata_emu_say "already started (moto pid ${STRATA_EMU_MOTO_PID:-none}, azurite pid ${STRATA_EMU_AZURITE_PID:-none})"
        return 0
    fi
    strata_emulators_install || return 1
    # Set before anything starts, so an error or Ctrl-C half-way still stops what did start.
    trap strata_emulators_stop EXIT

    local t0=$SECONDS s3_port az_port moto_log="$STRATA_EMU_LOGS/moto.log" az_log="$STRATA_EMU_LOGS/azurite.log"
    s3_port="$(_strata_emu_free_port)" && az_port="$(_strata_emu_free_port)" || {
        _strata_emu_say "could not pick free ports"
        return 1
    }

    "$STRATA_EMU_VENV/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$moto_log" 2>&1 </dev/null &
    STRATA_EMU_MOTO_PID=$!
    node "$STRATA_EMU_AZURITE_BIN" --blobHost 127.0.0.1 --blobPort "$az_port" --inMemoryPersistence \
        --disableTelemetry --silent >"$az_log" 2>&1 </dev/null &
    STRATA_EMU_AZURITE_PID=$!

    _strata_emu_wait moto "$STRATA_EMU_MOTO_PID" "$s3_port" "$moto_log" || { strata_emulators_stop; return 1; }
    _strata_emu_wait azurite "$STRATA_EMU_AZURITE_PID" "$az_port" "$az_log" || { strata_emulators_stop; return 1; }

    local status
    if ! status="$(curl -sS --noproxy '*' -o /dev/null -w '%{http_code}' -X PUT \
        "http://127.0.0.1:$s3_port/$STRATA_EMU_BUCKET")" || [[ "$status" != 200 ]]; then
        _strata_emu_say "moto: creating bucket $STRATA_EMU_BUCKET failed (HTTP ${status:-none})"
        strata_emulators_stop
        return 1
    fi
    if ! _strata_emu_azure_req create "http://127.0.0.1:$az_port" "$STRATA_EMU_CONTAINER" >/dev/null; then
        _strata_emu_say "azurite: creating container $STRATA_EMU_CONTAINER failed"
        strata_emulators_stop
        return 1
    fi

    export STRATA_TEST_EMULATORS=1
    export STRATA_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
    export STRATA_TEST_S3_BUCKET="$STRATA_EMU_BUCKET"
    export STRATA_TEST_AZURE_ENDPOINT="http://127.0.0.1:$az_port"
    export STRATA_TEST_AZURE_CONTAINER="$STRATA_EMU_CONTAINER"
    # moto accepts any credentials; the S3 client still needs some, from the standard variables,
    # exactly as a user's would come. (Azurite's development key is public; the tests pass
    # -o use_emulator=true.)
    export AWS_ACCESS_KEY_ID=strata-test AWS_SECRET_ACCESS_KEY=strata-test AWS_REGION=us-east-1
    _strata_emu_say "started in $((SECONDS - t0)) s: moto $STRATA_TEST_S3_ENDPOINT (pid $STRATA_EMU_MOTO_PID, bucket $STRATA_TEST_S3_BUCKET), azurite $STRATA_TEST_AZURE_ENDPOINT (pid $STRATA_EMU_AZURITE_PID, container $STRATA_TEST_AZURE_CONTAINER); logs in .emulators/logs/"
}

# --- command line ----------------------------------------------------------------------------------

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    case "${1:-}" in
    install)
        strata_emulators_install
        ;;
    run)
        shift
        [[ "${1:-}" == "--" ]] && shift
        if [[ $# -eq 0 ]]; then
            echo "usage: $0 run -- CMD [ARGS...]" >&2
            exit 2
        fi
        strata_emulators_start
        rc=0
        "$@" || rc=$?
        strata_emulators_stop
        exit "$rc"
        ;;
    *)
        echo "usage: $0 install | run -- CMD [ARGS...]   (or: source $0; strata_emulators_start)" >&2
        exit 2
        ;;
    esac
fi
