#!/usr/bin/env bash
# The test command: bash scripts/test.sh
#
# Installs what the tests need (Debian packages, a Python venv), then runs
# rustfmt, clippy, the release build, the Rust tests, then the Python
# compatibility suite (real Kafka clients against the real binary,
# kafka-python's and rskafka's own integration suites and kafkajs among them:
# docs/COMPATIBILITY.md) with a short run of every fuzz target beside it
# (scripts/fuzz_smoke.sh, at the lowest CPU priority).
# Safe to run again: every install step is skipped when already done.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

VENV="$REPO_ROOT/.venv"
REQUIREMENTS="$REPO_ROOT/tests/requirements.txt"
REQUIREMENTS_STAMP="$VENV/.requirements.sha256"

log() {
    printf '==> %s\n' "$*"
}

# ---------------------------------------------------------------------------
# Debian packages.
#
# Each entry is "command:package": the package is installed only when the
# command is missing. Add packages here (for example browser tests will need
# "chromium:chromium" and "chromedriver:chromium-driver").
# ---------------------------------------------------------------------------
APT_REQUIREMENTS=(
    "kcat:kcat"
    "npm:npm"
    "chromium:chromium"
    "promtool:prometheus"
    "nginx:nginx"
    "pg_ctlcluster:postgresql"
    "curl:curl"
)

ensure_apt_packages() {
    local missing=() entry cmd pkg
    for entry in "${APT_REQUIREMENTS[@]}"; do
        cmd="${entry%%:*}"
        pkg="${entry#*:}"
        if ! command -v "$cmd" >/dev/null 2>&1; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    log "installing Debian packages: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq >/dev/null
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------------------
# Python venv with the Kafka clients; reinstalled only when
# tests/requirements.txt changes (its sha256 is stored inside the venv).
# ---------------------------------------------------------------------------
ensure_venv() {
    local want have=""
    want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
    if [ -x "$VENV/bin/python" ] && [ -f "$REQUIREMENTS_STAMP" ]; then
        have="$(cat "$REQUIREMENTS_STAMP")"
    fi
    if [ "$want" = "$have" ]; then
        return 0
    fi
    log "installing Python test requirements into .venv"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    printf '%s\n' "$want" >"$REQUIREMENTS_STAMP"
}

# ---------------------------------------------------------------------------
# Node packages of a test directory (npm ci from its package-lock.json);
# reinstalled when the lockfile is newer than node_modules. tests/browser:
# playwright-core (no browser download: it drives the Debian chromium);
# tests/kafkajs: kafkajs.
# ---------------------------------------------------------------------------
ensure_npm_packages() {
    local dir="$REPO_ROOT/tests/$1"
    if [ -f "$dir/node_modules/.package-lock.json" ] &&
        [ ! "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        return 0
    fi
    log "installing Node test packages (npm ci in tests/$1)"
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
}

# ---------------------------------------------------------------------------
# cargo-fuzz (the fuzz targets in fuzz/); installed once. It needs nightly
# features, which RUSTC_BOOTSTRAP=1 allows on the stable toolchain.
# ---------------------------------------------------------------------------
CARGO_FUZZ_VERSION="0.13.2"

ensure_cargo_fuzz() {
    if cargo fuzz --version >/dev/null 2>&1; then
        return 0
    fi
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
}

ensure_apt_packages
ensure_venv
ensure_npm_packages browser
ensure_npm_packages kafkajs
ensure_cargo_fuzz

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --release --all-targets -- -D warnings

log "cargo build --release"
cargo build --release

log "cargo test --release"
cargo test --release

# The fuzz smoke run goes on beside pytest, at the lowest CPU priority: its
# build (minutes of both cores on a fresh clone) takes what the Python suite
# leaves idle while it waits on clients, nodes and timeouts, and a test
# process that wants a core gets it first. Its output follows pytest's; a
# crash fails the command as before.
log "fuzz smoke run (scripts/fuzz_smoke.sh), in the background at nice 19"
FUZZ_LOG="$(mktemp)"
# Its own process group (setsid), so that all of it ends with this script.
setsid nice -n 19 bash scripts/fuzz_smoke.sh >"$FUZZ_LOG" 2>&1 &
FUZZ_PID=$!
trap 'kill -- -"$FUZZ_PID" 2>/dev/null || true' EXIT

log "pytest (Kafka client compatibility)"
export SLUICE_BIN="$REPO_ROOT/target/release/sluice"
pytest_status=0
"$VENV/bin/python" -m pytest tests/ -v --timeout=300 || pytest_status=$?

log "waiting for the fuzz smoke run"
fuzz_status=0
wait "$FUZZ_PID" || fuzz_status=$?
trap - EXIT
cat "$FUZZ_LOG"
rm -f "$FUZZ_LOG"
if [ "$fuzz_status" -ne 0 ]; then
    log "fuzz smoke run failed (exit $fuzz_status)"
fi
if [ "$pytest_status" -ne 0 ] || [ "$fuzz_status" -ne 0 ]; then
    exit 1
fi
