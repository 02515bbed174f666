#!/usr/bin/env bash
# Serve the example app (examples/hello.py) with Tricorn on http://127.0.0.1:8000.
#
#   bash scripts/serve-example.sh                      # then: curl http://127.0.0.1:8000/
#   bash scripts/serve-example.sh --port 9000 --http h11
#
# Works on a fresh machine with python3: creates ./.venv and installs tricorn[standard] on
# first use (see venv.sh). Extra arguments are tricorn options.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/venv.sh
source scripts/venv.sh
ensure_venv "standard"
exec .venv/bin/tricorn examples.hello:app "$@"
