#!/usr/bin/env bash
# The test command: bash scripts/test.sh
#
# Installs what the tests need (Debian packages, a Python venv), then runs
# rustfmt, clippy, the release build, the Rust tests, a short run of every
# fuzz target and the Python compatibility suite (real Kafka clients against the real binary,
# kafka-python's and rskafka's own integration suites and kafkajs among them:
# docs/COMPATIBILITY.md).
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

# ---------------------------------------------------------------------------
# Fuzz smoke run: every target built once (optimised, no sanitizer: see
# docs/SECURITY.md, "Fuzzing"), then run for FUZZ_RUNS executions from a
# fixed seed over its committed corpus, so a given commit always explores the
# same inputs and passes or fails the same way (open-ended fuzzing is
# `cargo fuzz run` by hand, docs/SECURITY.md). New inputs go to a temporary
# directory, never into fuzz/corpus/; a crash fails the run and its input is
# kept in fuzz/artifacts/ (ignored).
# ---------------------------------------------------------------------------
FUZZ_RUNS="${FUZZ_RUNS:-500000}"
FUZZ_SEED="${FUZZ_SEED:-1}"

fuzz_smoke() {
    export RUSTC_BOOTSTRAP=1
    # Optimised at level 1 for the smoke run only (the fuzz crate's profile,
    # used by `cargo fuzz run -O` by hand, stays at 3): on two cores sluice
    # builds in 3.9 min instead of 4.9, its dependencies (which a fresh clone
    # builds again, instrumented for coverage) in 2.3 min, and the four runs
    # take 17 s instead of 13.
    local -x CARGO_PROFILE_RELEASE_OPT_LEVEL=1
    local flags=(-O --sanitizer none) start target scratch status=0
    # The same dependency versions as the main build (fuzz/Cargo.lock is ignored).
    cp Cargo.lock fuzz/Cargo.lock
    start=$SECONDS
    cargo fuzz build "${flags[@]}"
    log "fuzz targets built in $((SECONDS - start)) s"
    for target in $(cargo fuzz list); do
        scratch="$(mktemp -d)"
        mkdir -p "$scratch/new" fuzz/artifacts/"$target"
        start=$SECONDS
        if ! cargo fuzz run "${flags[@]}" "$target" "$scratch/new" "fuzz/corpus/$target" -- \
            -runs="$FUZZ_RUNS" -seed="$FUZZ_SEED" -artifact_prefix="fuzz/artifacts/$target/" \
            -print_final_stats=1 >"$scratch/log" 2>&1; then
            tail -n 40 "$scratch/log"
            status=1
        fi
        log "fuzz $target: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/log" |
            grep -o '[0-9]*$') executions in $((SECONDS - start)) s"
        rm -rf "$scratch"
    done
    return "$status"
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

log "fuzz smoke run (cargo fuzz, ${FUZZ_RUNS} runs per target from seed ${FUZZ_SEED})"
fuzz_smoke

log "pytest (Kafka client compatibility)"
export SLUICE_BIN="$REPO_ROOT/target/release/sluice"
exec "$VENV/bin/python" -m pytest tests/ -v --timeout=300
