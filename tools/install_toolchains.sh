#!/usr/bin/env bash
# Installs the guest toolchains that are missing (guest-sdk/README.md), from the package
# registries only: Rust from Debian (rustc 1.63 + the wasm32 std + lld), Node.js from Debian
# when absent, AssemblyScript from npm at the version pinned in
# guest-sdk/assemblyscript/package-lock.json, and Debian's etcd-server (the cluster tests). (C and Zig come from PyPI's ziglang, in the
# venv.) Also Debian's chromium, for the chat-room browser test. Idempotent, and fast when everything is present. `make build` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

AS_DIR=guest-sdk/assemblyscript
need_apt=()

[ -x /usr/bin/rustc ] || need_apt+=(rustc)
ls -d /usr/lib/rustlib/wasm32-unknown-unknown/lib >/dev/null 2>&1 || need_apt+=(libstd-rust-dev-wasm32)
command -v wasm-ld >/dev/null 2>&1 || need_apt+=(lld)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# Headless browser of the chat-room page test (driven by pip's playwright, not its download).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# etcd 3.4 for the cluster tests (tests/cluster/etcd_server.py starts members on loopback).
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)

if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "install_toolchains: missing ${need_apt[*]}; install them with" >&2
        echo "  apt-get install -y ${need_apt[*]}" >&2
        exit 1
    fi
    echo "install_toolchains: apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! node -e 'process.exit(+process.versions.node.split(".")[0] < 20 ? 1 : 0)'; then
    echo "install_toolchains: warning: AssemblyScript 0.28 wants Node.js 20+, found $(node --version)" >&2
fi

# AssemblyScript: reinstall when the lockfile is newer than the installed tree.
stamp="$AS_DIR/node_modules/.package-lock.json"
if [ ! -e "$AS_DIR/node_modules/assemblyscript/bin/asc.js" ] || [ "$AS_DIR/package-lock.json" -nt "$stamp" ]; then
    echo "install_toolchains: npm ci in $AS_DIR"
    (cd "$AS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
