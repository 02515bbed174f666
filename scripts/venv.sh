# Sourced by scripts/test.sh and scripts/serve-example.sh: make sure ./.venv exists and
# holds Tricorn (editable) with the extras they need. Not meant to be run on its own.
#
# Idempotent and cheap when nothing changed: the install is skipped while a stamp in the
# venv matches pyproject.toml and the requested extras/packages. TRICORN_REINSTALL=1 forces
# a fresh `pip install`. PYTHON picks the interpreter that creates the venv (default python3)
# and TRICORN_VENV its folder (default ./.venv), so CI can test another Python beside it.

# Frameworks the example apps (examples/) and their tests use; not Tricorn dependencies.
TRICORN_EXAMPLE_DEPS=(starlette fastapi flask)

# ensure_venv EXTRAS [PACKAGE...]: create .venv if missing, then install '.[EXTRAS]' and
# the extra packages unless the stamp says that exact install is already done.
ensure_venv() {
    local extras="$1"
    shift
    local root venv python stamp wanted
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    venv="${TRICORN_VENV:-$root/.venv}"
    python="$venv/bin/python"
    # One stamp per requested set, so test.sh and serve-example.sh do not undo each other.
    stamp="$venv/.tricorn-stamp-$(printf '%s' "$extras $*" | sha256sum | cut -c1-12)"

    if [[ ! -x "$python" ]]; then
        echo "==> creating $venv" >&2
        "${PYTHON:-python3}" -m venv "$venv"
    fi

    wanted="$(sha256sum <"$root/pyproject.toml" | cut -d' ' -f1)"
    if [[ "${TRICORN_REINSTALL:-0}" != 1 && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
        return 0
    fi

    echo "==> installing tricorn[$extras]${*:+ $*} into $venv" >&2
    rm -f "$stamp"
    "$python" -m pip install --quiet --disable-pip-version-check -e "$root[$extras]" "$@"
    echo "$wanted" >"$stamp"
}
