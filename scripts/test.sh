#!/usr/bin/env bash
# Run Tricorn's checks and test suite: the README's test command and what .ci/run calls.
# Checks: ruff, mypy --strict, the import layers of pyproject.toml, then pytest.
#
#   bash scripts/test.sh              # lint, type-check, full suite with branch coverage
#   bash scripts/test.sh -k fuzz -x   # extra arguments go to pytest
#
# Works on a fresh machine with python3 (and its venv module): it creates ./.venv and
# installs tricorn[standard,test] plus the example frameworks on first use (see venv.sh).
# Exits non-zero when any step fails, including a pytest run that collects no test.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/venv.sh
source scripts/venv.sh
ensure_venv "standard,test" "${TRICORN_EXAMPLE_DEPS[@]}"
bin="${TRICORN_VENV:-.venv}/bin"

echo "==> ruff check" >&2
"$bin/ruff" check tricorn tests
echo "==> ruff format --check" >&2
"$bin/ruff" format --check tricorn
echo "==> mypy (strict)" >&2
"$bin/mypy" tricorn
echo "==> import layers (lint-imports)" >&2
"$bin/lint-imports"

echo "==> pytest" >&2
status=0
"$bin/pytest" --cov=tricorn --cov-branch --cov-report=term "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "error: pytest collected no tests" >&2
fi
exit "$status"
