#!/usr/bin/env bash
# Renew docs/screenshots/*.png: runs the dashboard's browser tests (headless
# Chromium against a fresh node with the simulator on) with the screenshots
# written into docs/ instead of a temporary directory: every page in the light
# theme in English (<page>.png), in the dark theme (<page>-dark.png), in French
# (<page>-fr.png) and both (<page>-fr-dark.png), and the shop flows' details.
# Needs what `bash scripts/test.sh` installs (chromium, tests/browser/node_modules)
# and a release build.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
cargo build --release
cd tests/browser
# The console's tests drive Kafka clients in Python (confluent-kafka, see
# tests/requirements.txt): SLUICE_PYTHON names that interpreter.
SLUICE_BIN="$REPO_ROOT/target/release/sluice" \
    SLUICE_SCREENSHOT_DIR="$REPO_ROOT/docs/screenshots" \
    SLUICE_PYTHON="${SLUICE_PYTHON:-python3}" \
    node --test
