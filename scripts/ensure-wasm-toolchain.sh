#!/usr/bin/env bash
# Makes sure plugins can be compiled for wasm32-unknown-unknown.
#   (no argument)  rustup's standard target; if rustup cannot install it,
#                  Debian's rustc-web with the standard library built from
#                  source (what `parapet plugin build` falls back to).
#   --fallback     the Debian fallback, whatever rustup can do (so tests can
#                  check both build paths).
set -euo pipefail
target=wasm32-unknown-unknown

standard() {
  if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "wasm toolchain: rustup target $target (installed)"
  elif rustup target add "$target" >/dev/null 2>&1; then
    echo "wasm toolchain: rustup target $target (just installed)"
  else
    echo "wasm toolchain: rustup could not install $target"
    return 1
  fi
}

debian() {
  if [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust ] && [ -x /usr/lib/llvm-19/bin/wasm-ld ]; then
    echo "wasm toolchain: Debian rustc-web + rust-web-src + lld-19 (installed)"
    return 0
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "error: no wasm toolchain. As root: apt-get install rustc-web cargo-web rust-web-src lld-19" >&2
    return 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustc-web cargo-web rust-web-src lld-19 >/dev/null
  echo "wasm toolchain: Debian rustc-web + rust-web-src + lld-19 (just installed)"
}

case "${1:-}" in
  --fallback) debian ;;
  "") standard || debian ;;
  *) echo "usage: $0 [--fallback]" >&2; exit 2 ;;
esac
