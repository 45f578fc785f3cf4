#!/usr/bin/env bash
# Sets up (once) and runs every check and test:
# formatting, clippy, unit and integration tests against the real server, browser tests
# (wasm-bindgen-test in headless Chrome) and end-to-end tests driving a real Chromium.
#
# Built for a first run on 2 cores, where compiling is most of the time:
# - Clippy lints the workspace's crates while they are compiled for the tests (clippy-driver
#   as cargo's workspace wrapper, which is what `cargo clippy` does, but with code
#   generation), instead of two `cargo clippy` passes that type-check every dependency a
#   second time (measured: 2 min 14 s and 1 min 52 s on a first run).
# - The release build of the web app (long single-threaded LTO and wasm-opt steps) runs
#   beside the host build, in its own profile folder.
# - The test binaries run at the same time (cargo-nextest where it is installed, as on CI
#   machines; else cargo test), and the browser suite beside them: most tests wait on
#   timers, servers and browsers rather than the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --with-test-tools
source scripts/env.sh

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pids=()
results=$(mktemp)
logs=$(mktemp -d)
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

step "format"
cargo fmt --all -- --check

# Every cargo command below compiles the workspace's crates through clippy-driver with
# warnings denied (the dependencies are compiled by rustc as usual, and only once).
RUSTC_WORKSPACE_WRAPPER=$(rustup which clippy-driver)
CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
export RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS

step "build: web app (trunk, release, in the background), server, tests (clippy on every crate)"
# Not through clippy-driver: it turns MIR optimisations off, and the bundle has a budget.
env -u RUSTC_WORKSPACE_WRAPPER trunk build --release >"$logs/web.log" 2>&1 &
web=$!
pids+=("$web")
if cargo nextest --version >/dev/null 2>&1; then nextest=1; else nextest=0; fi
cargo build -p server -p e2e --bins
if [ "$nextest" = 1 ]; then
  cargo nextest run --workspace --exclude frontend --no-run
else
  cargo test --workspace --exclude frontend --no-run
fi
cargo test -p frontend --target wasm32-unknown-unknown --lib --bins --tests --no-run
if ! wait "$web"; then cat "$logs/web.log"; echo "trunk build --release failed" >&2; exit 1; fi
grep -E 'web app:|WARN' "$logs/web.log" || true

# Starts a server in the background and sets the variable named $1 to the URL it reports
# ("listening on URL").
start_server() {
  local var=$1 log url
  shift
  log=$(mktemp)
  "$@" >/dev/null 2>"$log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
  url=$(sed -n 's/.*listening on \([a-z]*:\/\/[^ ]*\).*/\1/p' "$log" | head -1)
  [ -n "$url" ] || { cat "$log" >&2; echo "$1 did not start" >&2; exit 1; }
  printf -v "$var" '%s' "$url"
  export "${var?}"
}

step "tests: browser (wasm-bindgen-test in headless Chrome, in the background) against a real server"
# Streams closed every 2 s and 1 s heartbeats exercise the wrapper's resume and watchdog.
start_server HUB_TEST_SERVER "$HUB_TARGET/debug/server" serve --addr 127.0.0.1:0 --assets dist \
  --db "$(mktemp -d)/hub.db" --max-stream-secs 2 --heartbeat-secs 1
# A server that never answers, or holds the body back: the wrapper's hanging-network cases.
start_server HUB_STALLING_SERVER "$HUB_TARGET/debug/stalling-server"
(
  # The runner's whole-suite limit (20 s by default) is less than the suite's waits add up to.
  export WASM_BINDGEN_TEST_TIMEOUT=180
  export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
  export CHROMEDRIVER=${CHROMEDRIVER:-$(command -v chromedriver)}
  cargo test -p frontend --target wasm32-unknown-unknown --lib --bins --tests
) >"$logs/browser.log" 2>&1 &
browser=$!
pids+=("$browser")

step "tests: unit, integration (real server, SQLite and Redis), end to end (real Chromium) and the trunk serve loop"
# One Redis for the whole run, on a free port with a temporary folder; killed at the end.
start_server HUB_TEST_REDIS "$HUB_TARGET/debug/test-redis"
if [ "$nextest" = 1 ]; then
  # Six at a time: most tests wait on timers, servers and browsers, not on the CPU.
  cargo nextest run --workspace --exclude frontend --no-fail-fast --test-threads 6 \
    --success-output final 2>&1 | tee -a "$results"
else
  cargo test --workspace --exclude frontend -- --show-output 2>&1 | tee -a "$results"
fi

step "tests: browser (its output)"
browser_ok=1
wait "$browser" || browser_ok=0
tee -a "$results" <"$logs/browser.log"
[ "$browser_ok" = 1 ] || { echo "the browser tests failed" >&2; exit 1; }

step "all checks and tests passed"
# cargo test prints "test result: ok. N passed; M failed", nextest "N tests run: N passed".
awk '/^test result:|tests run:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
