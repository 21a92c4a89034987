#!/usr/bin/env bash
# Builds librdkafka's C benchmark client, `rdkafka_performance`, from Debian's
# librdkafka source package and installs it as target/tools/rdkafka_performance.
#
#   bash scripts/build_rdkafka_perf.sh
#
# Everything comes through apt from the configured Debian archive: when no
# deb-src entry is configured, one is added that mirrors the existing binary
# entries (same URIs, suites, components and keyring). The source is unpacked
# under target/rdkafka-src/, librdkafka's static library is built from it
# (only the library and the one example, no docs, no tests) and the example
# is linked statically against it, so the binary does not depend on the
# system's librdkafka version.
#
# Idempotent: does nothing when target/tools/rdkafka_performance exists.
# Not part of the test command. Needs root (or sudo) for apt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/target/tools/rdkafka_performance"
SRC_DIR="${RDKAFKA_SRC_DIR:-$ROOT/target/rdkafka-src}"
JOBS="${JOBS:-2}"

if [[ -x "$OUT" ]]; then
    echo "already built: $OUT"
    exit 0
fi

SUDO=""
if [[ $EUID -ne 0 ]]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

have_deb_src() {
    grep -qsE '^[[:space:]]*(Types:.*\bdeb-src\b|deb-src[[:space:]])' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources
}

add_deb_src() {
    # Mirror every enabled binary entry as a source entry, in the same format.
    local f added=0
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        case "$f" in *-src.sources) continue ;; esac
        grep -qsE '^Types:.*\bdeb\b' "$f" || continue
        sed -E 's/^Types:.*$/Types: deb-src/' "$f" | $SUDO tee "${f%.sources}-src.sources" >/dev/null
        echo "added source entries: ${f%.sources}-src.sources"
        added=1
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        case "$f" in *-src.list) continue ;; esac
        grep -qsE '^[[:space:]]*deb[[:space:]]' "$f" || continue
        sed -nE 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" \
            | $SUDO tee "/etc/apt/sources.list.d/$(basename "${f%.list}")-src.list" >/dev/null
        echo "added source entries: /etc/apt/sources.list.d/$(basename "${f%.list}")-src.list"
        added=1
    done
    if [[ $added -eq 0 ]]; then
        echo "no Debian binary entries found to mirror as deb-src" >&2
        exit 1
    fi
}

started=$(date +%s)

if ! have_deb_src; then
    add_deb_src
fi
$SUDO apt-get update -qq

# Tools and the libraries librdkafka's build links against (compression
# codecs and TLS; SASL/GSSAPI and curl are left out: the benchmark client
# does not need them).
$SUDO apt-get install -y -qq --no-install-recommends \
    dpkg-dev build-essential pkg-config python3 \
    zlib1g-dev libssl-dev libzstd-dev liblz4-dev >/dev/null

mkdir -p "$SRC_DIR"
srcpkg=$(find "$SRC_DIR" -mindepth 1 -maxdepth 1 -type d -name 'librdkafka-*' -print -quit)
if [[ -z "$srcpkg" ]]; then
    (cd "$SRC_DIR" && apt-get source -qq librdkafka)
    srcpkg=$(find "$SRC_DIR" -mindepth 1 -maxdepth 1 -type d -name 'librdkafka-*' -print -quit)
fi
if [[ -z "$srcpkg" || ! -f "$srcpkg/examples/rdkafka_performance.c" ]]; then
    echo "librdkafka source not found under $SRC_DIR" >&2
    exit 1
fi
echo "source: $srcpkg"

cd "$srcpkg"
if [[ ! -f Makefile.config ]]; then
    # mklove's configure, told never to fetch anything (--no-download, no
    # --install-deps). Its log must not be named configure.*: mklove loads
    # every configure.* file in the directory as a module.
    ./configure --no-download --prefix=/usr/local --disable-gssapi --disable-curl \
        >build-configure.log 2>&1 \
        || { tail -n 40 build-configure.log >&2; exit 1; }
fi
make -C src -j"$JOBS" librdkafka.a >build-src.log 2>&1 \
    || { tail -n 40 build-src.log >&2; exit 1; }
make -C examples rdkafka_performance >build-examples.log 2>&1 \
    || { tail -n 40 build-examples.log >&2; exit 1; }

mkdir -p "$(dirname "$OUT")"
install -m 0755 examples/rdkafka_performance "$OUT"
echo "built $OUT from $(basename "$srcpkg") in $(( $(date +%s) - started )) s"
