#!/usr/bin/env bash
# Builds the page parser for wasm32-wasip1, reproducibly, and installs it as src/packagestats/parser.wasm.
#
#   bash wasm/build.sh           build and install the module
#   bash wasm/build.sh --check   rebuild in a temporary target dir; fail if it differs from the committed one
#   bash wasm/build.sh --deps    only install the Debian toolchain (the Dockerfile's cached layer)
#
# rustup cannot fetch the wasm32-wasip1 standard library here, so the module is built with Debian's
# rustc-web toolchain, compiling std from Debian's rust-web-src (-Zbuild-std, enabled on a stable
# compiler with RUSTC_BOOTSTRAP=1) and linking against Debian's wasi-libc with rust-lld (lld-22).
# Same toolchain + same Cargo.lock => same bytes, whatever the checkout's folder.
set -euo pipefail

mode=build
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  --deps) mode=deps ;;
  *) echo "usage: $0 [--check|--deps]" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
installed="$repo/src/packagestats/parser.wasm"
# The toolchain the committed module was built with; another one gives other bytes.
expected_rustc="1.96.0"

packages=(rustc-web cargo-web rust-web-src libstd-rust-web-dev rust-web-llvm lld-22 wasi-libc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "build.sh: missing Debian packages (run as root to install): ${missing[*]}" >&2
    exit 1
  fi
  echo "build.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    # A fresh machine may have no package lists yet.
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

[[ $mode == deps ]] && exit 0

# Debian's toolchain first: rustup's ~/.cargo/bin/cargo would shadow it.
export PATH="/usr/lib/rust-web/bin:/usr/bin:$PATH"
cargo_bin=""
for c in /usr/lib/rust-web/bin/cargo /usr/bin/cargo-web /usr/bin/cargo; do
  if [[ -x $c ]] && "$c" --version 2>/dev/null | grep -q "built from a source tarball"; then
    cargo_bin=$c
    break
  fi
done
if [[ -z $cargo_bin ]]; then
  echo "build.sh: Debian's cargo (package cargo-web) not found" >&2
  exit 1
fi
rustc_version=$(rustc --version | awk '{print $2}')
if [[ $rustc_version != "$expected_rustc" ]]; then
  echo "build.sh: warning: rustc $rustc_version, the committed module was built with $expected_rustc" >&2
fi
sysroot=$(rustc --print sysroot)
rust_src=$(readlink -f "$sysroot/lib/rustlib/src/rust")
cargo_home=${CARGO_HOME:-$HOME/.cargo}

if [[ $mode == check ]]; then
  target_dir=$(mktemp -d "${TMPDIR:-/tmp}/packagestats-wasm.XXXXXX")
  trap 'rm -rf "$target_dir"' EXIT
else
  target_dir="$here/target"
fi

# Paths that could end up in the module (panic locations) are mapped to fixed names.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_WASM32_WASIP1_LINKER=rust-lld
# SIMD (on by default in wasmtime) lets memchr scan 16 bytes at a time: about 4 % of a parse.
export RUSTFLAGS="-C panic=abort -C debuginfo=0 -C strip=symbols -Zlocation-detail=none -C target-feature=+simd128 \
-L native=/usr/lib/wasm32-wasi \
--remap-path-prefix=$here=/packagestats/wasm \
--remap-path-prefix=$target_dir=/packagestats/target \
--remap-path-prefix=$cargo_home=/cargo \
--remap-path-prefix=$rust_src=/rustc/src"
unset CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS RUSTC_WRAPPER CARGO_BUILD_RUSTC_WRAPPER

(
  cd "$here"
  nice "$cargo_bin" build --quiet --locked --release \
    --target wasm32-wasip1 -Zbuild-std=std,panic_abort \
    --target-dir "$target_dir" --bin packagestats-parser
)
built="$target_dir/wasm32-wasip1/release/packagestats-parser.wasm"
sum=$(sha256sum "$built" | cut -d' ' -f1)
size=$(stat -c %s "$built")

if [[ $mode == check ]]; then
  if [[ ! -f $installed ]]; then
    echo "build.sh --check: $installed is missing" >&2
    exit 1
  fi
  committed=$(sha256sum "$installed" | cut -d' ' -f1)
  if [[ $sum != "$committed" ]]; then
    echo "build.sh --check: MISMATCH: rebuilt $sum ($size bytes), committed $committed" >&2
    exit 1
  fi
  echo "build.sh --check: ok: $sum ($size bytes)"
else
  install -m 0644 "$built" "$installed"
  echo "build.sh: $installed: $sum ($size bytes)"
fi
