#!/usr/bin/env bash
# Quick start, part one: build samizdat and run `samizdat demo` (a local network of nodes on
# loopback that shares a generated file and fetches it with verification and resume).
# Extra arguments go to `samizdat demo` (e.g. --nodes 8 --size 256MiB --json).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    elif command -v curl >/dev/null 2>&1; then
        echo "Rust is not installed; installing the stable toolchain with rustup…" >&2
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "Rust is not installed and curl is missing: apt-get install -y curl, then rerun." >&2
        exit 1
    fi
fi
# A C/C++ compiler for the crypto crates; CMake and libclang to build BoringSSL (the HTTPS
# camouflage transport's TLS).
if ! command -v c++ >/dev/null 2>&1 || ! command -v cmake >/dev/null 2>&1 ||
    ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1; then
    echo "Installing a C compiler, CMake and libclang (needed by the crypto crates)…" >&2
    as_root=""
    [ "$(id -u)" -eq 0 ] || as_root="sudo"
    $as_root apt-get update -qq
    $as_root apt-get install -y -qq build-essential cmake libclang-dev >/dev/null
fi

cargo build --release --locked -p samizdat-cli --quiet
exec ./target/release/samizdat demo "$@"
