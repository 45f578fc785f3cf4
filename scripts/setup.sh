#!/usr/bin/env bash
# Installs everything the project needs to build and test, idempotently.
#
# Rust for wasm: `rustup target add wasm32-unknown-unknown` where it works (a normal laptop).
# Where rustup cannot fetch the wasm32 std (an offline Debian machine), it installs Debian's
# `rustc-web` toolchain, builds the wasm32 std once from `rust-web-src`, and links it into
# rustup as the toolchain `web`; the other scripts then run cargo with RUSTUP_TOOLCHAIN=web.
# Then: trunk (the web build and the development loop, at a pinned version), wasm-bindgen-cli
# (the exact version in Cargo.lock), wasm-opt (binaryen from npm, the version Trunk.toml
# pins), and with --with-test-tools Chromium and chromedriver for the browser tests,
# redis-server for the Redis store's tests (Debian packages), axe-core (npm) for the
# accessibility check, schemathesis (PyPI, in a venv) for the check of the API against its
# description, and cargo-nextest (the host tests' runner) where the machine lacks it.
#
# A second run only checks and takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

# 0.22 declares rust-version 1.96.1, newer than the toolchains these machines have.
TRUNK_VERSION=0.21.14
BINARYEN_VERSION=$(sed -n 's/^wasm_opt = "version_\([0-9]*\)"$/\1.0.0/p' Trunk.toml)
AXE_VERSION=4.14.1
SCHEMATHESIS_VERSION=4.32.5
# The test runner, where the machine has none as new as .config/nextest.toml requires.
NEXTEST_VERSION=0.9.143
NEXTEST_REQUIRED=$(sed -n 's/^nextest-version = { required = "\(.*\)" }$/\1/p' .config/nextest.toml)
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)

SETUP_START=$SECONDS
log() { printf '\033[1msetup [%dm%02ds]:\033[0m %s\n' $(((SECONDS - SETUP_START) / 60)) $(((SECONDS - SETUP_START) % 60)) "$*"; }
# Host tools are not our hot path: a cheap release profile (no LTO, parallel codegen,
# opt-level 0) builds them in minutes on 2 cores; the heavy lifting of a build is done by
# cargo, wasm-bindgen's own passes and wasm-opt (trunk took 9 min 05 s at opt-level 1 and
# 4 min 56 s at 0, alone). The two install at the same time, each in a target folder of
# ours, so that one's single-threaded steps (linking, a large crate) leave no core idle
# and an interrupted install picks up where it stopped; the folders go once both are in.
# Cargo prints a line per crate it compiles, so a first run shows how far each has got.
INSTALL_TARGET=$HUB_TOOLS/install-target
cheap_install() {
  local name=$1 total=$2; shift 2
  cargo install --config profile.release.opt-level=0 --config profile.release.codegen-units=16 \
    --config profile.release.lto=false --config profile.release.debug=false \
    --target-dir "$INSTALL_TARGET/$name" "$@" 2>&1 \
    | { n=0; while IFS= read -r line; do
          case "$line" in *Compiling*) n=$((n + 1)) ;; *Downloaded*|*Locking*|*Adding*|*Updating*) continue ;; esac
          printf '  [%s %d/~%d crates, %dm%02ds] %s\n' "$name" "$n" "$total" $(((SECONDS - SETUP_START) / 60)) \
            $(((SECONDS - SETUP_START) % 60)) "${line#"${line%%[! ]*}"}"
        done; }
  return "${PIPESTATUS[0]}"
}
have_root() { [ "$(id -u)" = 0 ]; }
apt_missing() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  echo "${missing[@]}"
}
apt_install() {
  local missing
  missing=$(apt_missing "$@")
  [ -z "$missing" ] && return 0
  have_root || { echo "setup: please install these Debian packages: $missing" >&2; exit 1; }
  log "apt-get install $missing"
  if [ ! -f "$HUB_TOOLS/.apt-updated" ]; then apt-get update -qq && touch "$HUB_TOOLS/.apt-updated"; fi
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

mkdir -p "$HUB_TOOLS/bin"

# --- Rust with a wasm32 std -------------------------------------------------------------
if [ "$HUB_WASM_MODE" = debian ]; then
  apt_install rustc-web cargo-web rust-web-src rust-web-clippy rustfmt-web rust-web-llvm lld-22
  T=/usr/lib/rustlib/wasm32-unknown-unknown
  if ! { ls $T/lib/libstd-*.rlib && [ "$(cat $T/rustc-vV)" = "$(/usr/bin/rustc -vV)" ]; } >/dev/null 2>&1; then
    log "building the wasm32 std from rust-web-src (about a minute)"
    W=$(mktemp -d)
    mkdir -p "$W/src"; : > "$W/src/lib.rs"
    printf '[package]\nname = "wasm-std-build"\nversion = "0.0.0"\nedition = "2021"\n' > "$W/Cargo.toml"
    (cd "$W" && env -u RUSTUP_TOOLCHAIN RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
      RUSTFLAGS="-Cembed-bitcode=yes" CARGO_TARGET_DIR="$W/target" \
      /usr/bin/cargo build -q --release --target wasm32-unknown-unknown \
      -Zbuild-std=std,panic_abort,panic_unwind,test)
    rm -rf "$T/lib"; mkdir -p "$T/lib"
    find "$W/target/wasm32-unknown-unknown/release/deps" -name 'lib*.rlib' ! -name 'libwasm_std_build-*' -exec cp {} "$T/lib/" \;
    /usr/bin/rustc -vV > "$T/rustc-vV"
    rm -rf "$W"
  fi
  if ! rustup toolchain list | grep -q '^web'; then
    mkdir -p /opt/rust-web/bin /opt/rust-web/lib
    for b in rustc rustdoc cargo cargo-clippy clippy-driver cargo-fmt rustfmt; do ln -sf "/usr/bin/$b" /opt/rust-web/bin/; done
    rustup toolchain link web /opt/rust-web
  fi
else
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
fi

# --- wasm-opt, Chromium and chromedriver (downloads, in the background) ----------------------
# They mostly wait on the network and the disk, so they run while cargo compiles below.
downloads() {
  if ! "$HUB_TOOLS/bin/wasm-opt" --version 2>/dev/null | grep -q "(version_${BINARYEN_VERSION%%.*})"; then
    command -v npm >/dev/null || apt_install nodejs npm
    log "npm install binaryen@$BINARYEN_VERSION (wasm-opt)"
    npm install -s --prefix "$HUB_TOOLS/binaryen" --no-audit --no-fund "binaryen@$BINARYEN_VERSION" >/dev/null
    ln -sf "$HUB_TOOLS/binaryen/node_modules/.bin/wasm-opt" "$HUB_TOOLS/bin/wasm-opt"
  fi
  if [ "$WITH_TEST_TOOLS" = 1 ] && [ ! -f "$HUB_TOOLS/axe/node_modules/axe-core/axe.min.js" ]; then
    log "npm install axe-core@$AXE_VERSION (the browser tests' accessibility check)"
    npm install -s --prefix "$HUB_TOOLS/axe" --no-audit --no-fund "axe-core@$AXE_VERSION" >/dev/null
  fi
  if [ "$WITH_TEST_TOOLS" = 1 ] \
    && ! "$HUB_TOOLS/schemathesis/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    log "pip install schemathesis==$SCHEMATHESIS_VERSION (the API's description against the live server)"
    python3 -m venv "$HUB_TOOLS/schemathesis"
    "$HUB_TOOLS/schemathesis/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  fi
  if [ "$WITH_TEST_TOOLS" = 1 ] && command -v apt-get >/dev/null && have_root; then
    apt_install chromium chromium-driver redis-server
  fi
  return 0
}
WITH_TEST_TOOLS=0
[ "${1:-}" = --with-test-tools ] && WITH_TEST_TOOLS=1
downloads &
downloads_pid=$!

# --- wasm-bindgen-cli and trunk, compiled side by side --------------------------------------
installs=()
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $WASM_BINDGEN_VERSION"; then
  log "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 150 crates, once)"
  # Not --locked: its lockfile pins crates newer than some registry mirrors carry. No TLS:
  # its test runner talks only to the local chromedriver. The crates that parse, rewrite
  # and write wasm get opt-level 1: it rewrites every wasm the builds and tests make
  # (measured on a 33 MB debug wasm: 1.5 s so, 3.8 s with all at 0).
  hot=()
  for crate in wasmparser wasm-encoder walrus gimli leb128 wasm-bindgen-cli-support; do
    hot+=(--config "profile.release.package.$crate.opt-level=1")
  done
  cheap_install wasm-bindgen 150 "${hot[@]}" --force --no-default-features wasm-bindgen-cli \
    --version "$WASM_BINDGEN_VERSION" &
  installs+=($!)
fi
if ! trunk --version 2>/dev/null | grep -qx "trunk $TRUNK_VERSION"; then
  log "cargo install trunk $TRUNK_VERSION (about 370 crates, once)"
  # No TLS at all: trunk here fetches nothing (setup installs its tools, TRUNK_OFFLINE) and
  # proxies to a plain-HTTP backend, so neither OpenSSL nor rustls is built (368 crates
  # instead of 385), and there is no start-up check against the registry.
  cheap_install trunk 370 --force --locked trunk --version "$TRUNK_VERSION" \
    --no-default-features &
  installs+=($!)
fi
nextest=$(cargo nextest --version 2>/dev/null | sed -n 's/^cargo-nextest \([0-9.]*\).*/\1/p')
if [ "$WITH_TEST_TOOLS" = 1 ] \
  && [ "$(printf '%s\n' "$NEXTEST_REQUIRED" "${nextest:-0}" | sort -V | head -1)" != "$NEXTEST_REQUIRED" ]; then
  log "cargo install cargo-nextest $NEXTEST_VERSION (the test runner, about 290 crates, once)"
  # Without self-update (it would fetch from GitHub) and without USDT probes.
  cheap_install nextest 290 --force --locked --no-default-features cargo-nextest \
    --version "$NEXTEST_VERSION" &
  installs+=($!)
fi
for pid in ${installs[@]+"${installs[@]}"}; do
  if ! wait "$pid"; then
    kill ${installs[@]+"${installs[@]}"} "$downloads_pid" 2>/dev/null || true
    echo "setup: cargo install failed (see above)" >&2
    exit 1
  fi
done
[ "${#installs[@]}" = 0 ] || log "tools installed"
rm -rf "$INSTALL_TARGET"
wait "$downloads_pid" || { echo "setup: installing wasm-opt or Chromium failed (see above)" >&2; exit 1; }
if [ "$WITH_TEST_TOOLS" = 1 ] && ! command -v chromedriver >/dev/null; then
  echo "setup: chromedriver not found; install Chrome/Chromium and the matching chromedriver" >&2
  exit 1
fi
if [ "$WITH_TEST_TOOLS" = 1 ] && ! command -v "${HUB_REDIS_SERVER:-redis-server}" >/dev/null; then
  echo "setup: redis-server not found; install Redis 6.2 or newer (Debian: apt install redis-server;" \
    "macOS: brew install redis) or set HUB_REDIS_SERVER to its path" >&2
  exit 1
fi
cargo fetch -q
log "toolchain ready ($HUB_WASM_MODE) in $((SECONDS - SETUP_START)) s"
