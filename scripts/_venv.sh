# shellcheck shell=bash
# Shared by scripts/test, scripts/demo and .ci/run: make sure the virtual environment for the chosen
# Airflow line exists and holds this package, its test extras and the pinned Airflow.
#
# Why a stamp file: `pip install` on an already complete environment still resolves every dependency
# (10-30 s of registry traffic). The stamp records a hash of everything that decides what gets
# installed (pyproject.toml, the Airflow pin, this file), so a second run skips pip entirely and the
# commands stay quick, while any change to the dependencies reinstalls on the next run.
#
# Usage: source scripts/_venv.sh; ensure_venv   -> sets VENV, PY, AIRFLOW_VERSION
#
# AIRFLOW_LINE picks the environment:
#   3    .venv       Airflow 3.3.2 and the newest providers (the default)
#   2    .venv-af2   Airflow 2.11.0
#   min  .venv-min   the LOWEST supported set: every runtime dependency at exactly the floor that
#                    pyproject.toml declares (apache-airflow>=2.10.0 -> ==2.10.0, and so on), so the
#                    declared lower bounds are what CI tests, not what somebody once believed.

# The Airflow lines the provider supports; pinned here so CI tests exactly these.
AIRFLOW_3_VERSION="3.3.2"
AIRFLOW_2_VERSION="2.11.0"
# Airflow 2.x's ObjectStoragePath refuses every URL with universal-pathlib 0.3 (what pip picks without
# Airflow's constraints file); Airflow 2's constraints pin the 0.2 line, so the 2.x legs do too.
# cryptography 51 made MultiFernet a Rust class that takes no new attributes, and Airflow 2's get_fernet()
# sets one (`is_encrypted`), so every connection from an environment variable fails to load there.
AIRFLOW_2_EXTRA_PINS="universal-pathlib<0.3 cryptography<51"
# pandas 2.1 (the declared floor) is built against numpy 1.x and crashes on import with numpy 2; its
# metadata does not say so, Airflow 2.10's constraints pin numpy 1.26, and so does the min leg.
# pyarrow at the parquet extra's floor too: pyarrow >= 18 refuses numpy 1.x.
AIRFLOW_MIN_EXTRA_PINS="$AIRFLOW_2_EXTRA_PINS numpy<2 pyarrow==14.0.0"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

_pick_python() {
    # A fresh machine may have only `python3`; honour an explicit choice first.
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3.10 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    _log "no Python 3.10+ found (set PYTHON=/path/to/python3)"
    return 1
}

floor_pins() {
    # The runtime dependencies of pyproject.toml with each lower bound turned into an exact pin
    # ("pandas>=2.1.0" -> "pandas==2.1.0"). A regex, not tomllib: the base Python may be 3.10.
    "$1" - "$ROOT/pyproject.toml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
pins = [f"{n}=={v}" for n, v in re.findall(r'"([A-Za-z0-9_.\-]+)>=([0-9][0-9.]*)', block)]
print(" ".join(pins))
PY
}

ensure_venv() {
    local EXTRA_PINS="" AIRFLOW_PIN
    case "${AIRFLOW_LINE:-3}" in
        3) VENV="$ROOT/.venv"; AIRFLOW_VERSION="$AIRFLOW_3_VERSION" ;;
        2) VENV="$ROOT/.venv-af2"; AIRFLOW_VERSION="$AIRFLOW_2_VERSION"; EXTRA_PINS="$AIRFLOW_2_EXTRA_PINS" ;;
        min) VENV="$ROOT/.venv-min"; AIRFLOW_VERSION="min"; EXTRA_PINS="$AIRFLOW_MIN_EXTRA_PINS" ;;
        *) _log "AIRFLOW_LINE must be 2, 3 or min, got '${AIRFLOW_LINE}'"; return 2 ;;
    esac
    PY="$VENV/bin/python"

    if [ ! -x "$PY" ]; then
        local base_python
        base_python="$(_pick_python)" || return 1
        _log "creating $VENV with $base_python"
        "$base_python" -m venv "$VENV" || {
            # Debian's python3 ships venv support in a separate package.
            if command -v apt-get >/dev/null 2>&1; then
                apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
                "$base_python" -m venv "$VENV"
            else
                return 1
            fi
        }
    fi

    local stamp="$VENV/.crowdtwist-install-stamp" want
    want="$(cat "$ROOT/pyproject.toml" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)-airflow-$AIRFLOW_VERSION"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    if [ "$AIRFLOW_VERSION" = "min" ]; then
        AIRFLOW_PIN="$(floor_pins "$PY")" || return 1
    else
        AIRFLOW_PIN="apache-airflow==$AIRFLOW_VERSION"
    fi
    # pip's resolver warnings and setuptools' notices (~190 lines) go to a log file, not the screen: a
    # first run should show what the provider does, not the installer. The log is shown on failure.
    local install_log="$VENV/install.log"
    _log "installing the provider with the dev dependency group and $AIRFLOW_PIN into $VENV" \
        "(about a minute; log: $install_log)"
    # pip >= 25.1 reads PEP 735 dependency groups (--group); the test tools are not a published extra.
    # shellcheck disable=SC2086  # the pins are separate words on purpose
    if ! { "$PY" -m pip install --disable-pip-version-check --upgrade "pip>=25.1" \
        && (cd "$ROOT" && "$PY" -m pip install --disable-pip-version-check \
            -e . --group dev $AIRFLOW_PIN $EXTRA_PINS); } >"$install_log" 2>&1; then
        tail -n 40 "$install_log" >&2
        _log "installing into $VENV failed; the whole log is $install_log"
        return 1
    fi
    echo "$want" >"$stamp"
}
