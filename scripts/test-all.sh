#!/usr/bin/env bash
# Runs every check Samizdat has, in the order CI runs them:
#   system packages and toolchain components, rustfmt, clippy, build, cargo test,
#   then every fuzz target built once and smoke-run for FUZZ_SECONDS each.
# Works on a fresh Debian machine that has only the Rust toolchain (run as root, or with sudo).
# Ends with the line "N passed, M failed" (one per step) and exits non-zero if any step failed.
#
# Environment:
#   FUZZ_SECONDS=20   how long each fuzz target runs
#   SKIP_FMT=1 SKIP_CLIPPY=1 SKIP_TEST=1 SKIP_FUZZ=1   skip a step (local iteration only)
#   FAIL_FAST=1       stop at the first failing step instead of running the rest

# The helpers below run through `step "$@"`, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

# Debian packages the tests and tools need; add to this list as needed.
#   ent       randomness checks in the vault tests
#   iproute2  `ip netns` for the network-namespace tests
#   nftables  the censor (blackholed addresses) in the network-namespace tests
#   g++       libfuzzer-sys compiles libFuzzer (C++)
#   cmake libclang-dev   BoringSSL (btls-sys: built with CMake, bindings by bindgen/libclang)
#                        for the HTTPS camouflage transport
#   chromium  the real browser whose TLS ClientHello the camouflage test compares with ours
#   nginx     the reverse proxy in front of a node in the HTTPS transport test
APT_PACKAGES="ent iproute2 nftables g++ cmake libclang-dev chromium nginx obfs4proxy"
# cargo-fuzz version installed when it is missing.
CARGO_FUZZ_VERSION="0.13.2"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
# Every crate under test forbids unsafe code, so AddressSanitizer finds little that the fuzzer's
# own panics and assertions would not; building without it halves the fuzz build time.
# FUZZ_SANITIZER=address restores it.
FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

PASSED=0
FAILED=0
LAST_STATUS=0
REPORT=()

# step NAME COMMAND...: runs one step, timing it and recording whether it passed.
step() {
    local name="$1"
    shift
    echo
    echo "==> ${name}"
    local start=$SECONDS status=0
    "$@" || status=$?
    local took=$((SECONDS - start))
    LAST_STATUS=$status
    if [[ $status -eq 0 ]]; then
        PASSED=$((PASSED + 1))
        REPORT+=("$(printf '  ok    %-28s %5ss' "$name" "$took")")
        echo "<== ${name}: ok (${took}s)"
    else
        FAILED=$((FAILED + 1))
        REPORT+=("$(printf '  FAIL  %-28s %5ss  (exit %s)' "$name" "$took" "$status")")
        echo "<== ${name}: FAILED with exit ${status} (${took}s)"
        if [[ "${FAIL_FAST:-0}" == 1 ]]; then
            finish
        fi
    fi
}

skipped() {
    REPORT+=("$(printf '  skip  %-28s' "$1")")
    echo
    echo "==> $1: skipped"
}

finish() {
    echo
    echo "== summary (total ${SECONDS}s)"
    printf '%s\n' "${REPORT[@]}"
    echo "${PASSED} passed, ${FAILED} failed"
    [[ $FAILED -eq 0 ]] && exit 0
    exit 1
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "need root (or sudo) to run: $*" >&2
        return 1
    fi
}

install_system_packages() {
    local missing=() pkg
    for pkg in $APT_PACKAGES; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        echo "system packages present: ${APT_PACKAGES}"
        return 0
    fi
    echo "installing missing system packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || return 1
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}"
}

install_rust_components() {
    local missing=()
    cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "adding rustup components: ${missing[*]}"
        rustup component add "${missing[@]}" || return 1
    fi
    cargo --version && cargo fmt --version && cargo clippy --version
}

install_cargo_fuzz() {
    if cargo fuzz --version >/dev/null 2>&1; then
        cargo fuzz --version
        return 0
    fi
    echo "installing cargo-fuzz ${CARGO_FUZZ_VERSION}"
    # A thin CLI: build it quickly rather than make it fast.
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=0 \
        CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        cargo install cargo-fuzz --locked --version "${CARGO_FUZZ_VERSION}"
}

# The fuzz crate is its own workspace with its own target directory (fuzz/target): it is built
# with sanitizer flags, so sharing the main target directory would only cause rebuilds.
# cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
in_fuzz() {
    (cd "$ROOT/fuzz" && env -u CARGO_TARGET_DIR RUSTC_BOOTSTRAP=1 "$@")
}

# Records a failed step whose command did not run through `step`.
failed() {
    FAILED=$((FAILED + 1))
    REPORT+=("$(printf '  FAIL  %-28s' "$1")")
    echo "<== $1: FAILED"
}

fuzz_all() {
    local targets target
    echo
    echo "==> fuzz list"
    if ! targets=$(in_fuzz cargo fuzz list) || [[ -z "$targets" ]]; then
        failed "fuzz list"
        return
    fi
    echo "fuzz targets: ${targets//$'\n'/ }"
    step "fuzz build" in_fuzz cargo fuzz build --sanitizer "$FUZZ_SANITIZER"
    if [[ $LAST_STATUS -ne 0 ]]; then
        return
    fi
    for target in $targets; do
        # A crash makes libFuzzer exit non-zero; cargo fuzz prints the input and its artifact path.
        step "fuzz ${target} (${FUZZ_SECONDS}s)" \
            in_fuzz cargo fuzz run --sanitizer "$FUZZ_SANITIZER" "$target" -- -max_total_time="${FUZZ_SECONDS}"
    done
}

# Setup failures make every later step meaningless: stop at once.
step "system packages" install_system_packages
step "rust components" install_rust_components
if [[ $FAILED -gt 0 ]]; then
    finish
fi

if [[ "${SKIP_FMT:-0}" == 1 ]]; then skipped "rustfmt"; else
    step "rustfmt" cargo fmt --all -- --check
    step "rustfmt (fuzz)" in_fuzz cargo fmt -- --check
fi
if [[ "${SKIP_CLIPPY:-0}" == 1 ]]; then skipped "clippy"; else
    step "clippy" cargo clippy --workspace --all-targets -- -D warnings
fi
if [[ "${SKIP_TEST:-0}" == 1 ]]; then skipped "build tests"; skipped "cargo test"; else
    # Build first so the log separates compile time from test time (same profile as the tests).
    step "build tests" cargo test --workspace --no-run
    # --no-fail-fast: one failing test binary must not hide the results of the others.
    step "cargo test" cargo test --workspace --no-fail-fast
fi
if [[ "${SKIP_FUZZ:-0}" == 1 ]]; then skipped "fuzz"; else
    step "install cargo-fuzz" install_cargo_fuzz
    if cargo fuzz --version >/dev/null 2>&1; then
        fuzz_all
    fi
fi

finish
