#!/usr/bin/env bash
# Install Autobahn|Testsuite's wstest (the RFC 6455 conformance client) into its own
# Python 2.7 virtualenv, for tests/conformance/ (run_autobahn.py, test_autobahn.py).
#
#   bash scripts/install-autobahn.sh              # into /tmp/autobahn-venv
#   bash scripts/install-autobahn.sh DIR          # into DIR; wstest is DIR/bin/wstest
#
# wstest runs on Python 2.7 only: taken from $PYTHON2, else python2.7 on PATH, else pyenv's
# newest 2.7. Every package is pinned (installed with --no-deps, so nothing floats); two of
# them (wsaccel, ujson) compile with gcc against Python 2's headers. Idempotent: a stamp in
# the venv skips the install while the pins are unchanged. Exits 3 when there is no
# Python 2.7 on the machine.
set -euo pipefail

venv="${1:-${TRICORN_AUTOBAHN_VENV:-/tmp/autobahn-venv}}"

# Pins found working on 2.7.18: autobahntestsuite 25.10.1 with its own pinned set
# (autobahn 0.10.9, Twisted 19.10.0, ...) and their dependencies' last Python 2 releases.
pins=(
    autobahntestsuite==25.10.1
    autobahn==0.10.9
    txaio==2.1.0
    wsaccel==0.6.6
    ujson==2.0.3
    Twisted==19.10.0
    zope.interface==4.6.0
    incremental==16.10.1
    constantly==15.1.0
    Automat==22.10.0
    attrs==21.4.0
    hyperlink==21.0.0
    idna==2.10
    typing==3.10.0.0
    PyHamcrest==1.10.1
    six==1.16.0
    setuptools==44.0.0
    Jinja2==2.11.3
    MarkupSafe==1.1.1
    Werkzeug==1.0.1
    klein==17.10.0
    pyOpenSSL==19.1.0
    cryptography==3.3.2
    cffi==1.15.1
    pycparser==2.21
    enum34==1.1.10
    ipaddress==1.0.23
    service-identity==18.1.0
    pyasn1==0.5.1
    pyasn1-modules==0.3.0
    unittest2==1.1.0
    argparse==1.4.0
    linecache2==1.0.0
    traceback2==1.4.0
)
virtualenv_pin=virtualenv==16.7.12 # the last virtualenv that runs on Python 2 itself

is_python27() {
    "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' >/dev/null 2>&1
}

# The first working Python 2.7: $PYTHON2, python2.7 on PATH (a pyenv shim there may exist
# yet refuse to run), then pyenv's installed 2.7 versions, newest first.
find_python2() {
    local root="${PYENV_ROOT:-$HOME/.pyenv}" candidate
    for candidate in "${PYTHON2:-}" "$(command -v python2.7 || true)" \
        $(ls -d "$root"/versions/2.7.*/bin/python 2>/dev/null | sort -V -r); do
        if [[ -n "$candidate" ]] && is_python27 "$candidate"; then
            echo "$candidate"
            return
        fi
    done
}

python2="$(find_python2)"
if [[ -z "$python2" ]]; then
    echo "error: no Python 2.7 found (set PYTHON2, or install 2.7 with pyenv): wstest needs it" >&2
    exit 3
fi

stamp="$venv/.tricorn-autobahn-stamp"
wanted="$(printf '%s\n' "$python2" "$virtualenv_pin" "${pins[@]}" | sha256sum | cut -d' ' -f1)"
if [[ -x "$venv/bin/wstest" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    echo "==> wstest already installed: $venv/bin/wstest" >&2
    exit 0
fi

echo "==> creating $venv with $python2" >&2
rm -rf "$venv"
# virtualenv is installed into a scratch folder, not into the Python 2 installation.
bootstrap="$(mktemp -d)"
trap 'rm -rf "$bootstrap"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONWARNINGS=ignore
"$python2" -m pip install --quiet --target "$bootstrap" "$virtualenv_pin"
PYTHONPATH="$bootstrap" "$python2" -m virtualenv --quiet "$venv"

echo "==> installing ${pins[0]} and its pinned dependencies" >&2
"$venv/bin/pip" install --quiet --no-deps "${pins[@]}"
"$venv/bin/pip" check >&2
"$venv/bin/wstest" --autobahnversion >&2
echo "$wanted" >"$stamp"
echo "==> wstest installed: $venv/bin/wstest" >&2
