#!/usr/bin/env bash
# Sets up (once) and runs every check and test:
# formatting, clippy, unit and integration tests against the real server, browser tests
# (wasm-bindgen-test in headless Chrome) and end-to-end tests driving a real Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --with-test-tools
source scripts/env.sh

# A heading per step, with the time since the script started (setup included).
step() { printf '\n\033[1m== %s\033[0m [%dm%02ds]\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }
pids=()
results=$(mktemp)
# Runs a test command, keeping its "test result" lines (libtest's, one per test under
# nextest) for the summary at the end.
run_tests() { "$@" 2>&1 | tee -a "$results"; }
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

step "format"
cargo fmt --all -- --check

step "build: web app"
# Before clippy-driver is set below: it turns MIR optimisations off, and the bundle has a
# size budget.
trunk build --release

# Clippy, with warnings denied, on every crate of the workspace as the builds and tests
# below compile it: clippy-driver as cargo's workspace wrapper is what `cargo clippy` does,
# but here with code generation, so the dependencies are compiled once. Two `cargo clippy`
# passes type-checked every dependency a second time: 2 min 14 s and 1 min 52 s of a first
# run on 2 cores.
RUSTC_WORKSPACE_WRAPPER=$(rustup which clippy-driver)
CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
export RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS

# What the tests below build, as they build it: a crate's features depend on what is built
# beside it (the tests' dev-dependencies among them), so a separate build of the binaries
# compiled tokio, hyper, axum and the rest a second time (a first run had 1 min 59 s of
# it). The wasm32 tests' build also compiles the dependencies of `trunk serve`'s debug
# build in the dev-loop test, which otherwise did it during the test run (2 min 42 s).
HOST_TESTS=(--workspace --exclude frontend)
WASM_TESTS=(-p leptos-hub -p frontend --target wasm32-unknown-unknown --tests)
step "build and clippy: every crate, test and binary, host and wasm32"
cargo nextest run "${HOST_TESTS[@]}" --no-run
cargo test "${WASM_TESTS[@]}" --no-run

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

step "tests: unit, integration (real server, SQLite and Redis), end to end (real Chromium) and the trunk serve loop"
# One Redis for the whole run, on a free port with a temporary folder; killed at the end.
start_server HUB_TEST_REDIS "$HUB_TARGET/debug/test-redis"
# cargo-nextest runs every test binary's tests at once (.config/nextest.toml says how
# many and which first): `cargo test`, one binary after another, took 6 min 07 s here,
# nextest 2 min 35 s. It leaves the doctests to cargo.
run_tests cargo nextest run "${HOST_TESTS[@]}"
run_tests cargo test --doc "${HOST_TESTS[@]}"

step "the API against its own description: schemathesis on a live server at its defaults"
# Every described operation but the endless streams (whose answers never end), with
# generated and edge-case input: no server error, no answer outside the description.
start_server HUB_SCHEMA_SERVER "$HUB_TARGET/debug/server" serve --addr 127.0.0.1:0 \
  --assets /nonexistent --db "$(mktemp -d)/hub.db"
"$HUB_TOOLS/schemathesis/bin/schemathesis" run "$HUB_SCHEMA_SERVER/api/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --exclude-path-regex '^/(events|sse/)' --max-examples 100 --request-timeout 10 --no-color

step "soak, in the background: one minute of subscribers coming and going (bench --quick --soak 1)"
# A small soak on the debug server: fails unless every stay got every notification once.
# It mostly waits, so it runs beside the browser tests below (alone it took 1 min 02 s of
# a 15-minute run) and its output comes after them.
soak_log=$(mktemp)
"$HUB_TARGET/debug/bench" --quick --soak 1 --hub "$HUB_TARGET/debug/server" --out "$(mktemp)" \
  >"$soak_log" 2>&1 &
soak=$!
pids+=("$soak")

step "tests: browser (wasm-bindgen-test in headless Chrome) against a real server"
# The test page is served by wasm-bindgen-test-runner, on an origin of its own (a port
# picked here): an app on another origin than the hub's, which may publish only because
# --cors-origin names it, as a real one would need.
WASM_BINDGEN_TEST_ADDRESS=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export WASM_BINDGEN_TEST_ADDRESS
# Streams closed every 2 s and 1 s heartbeats exercise the wrapper's resume and watchdog.
start_server HUB_TEST_SERVER "$HUB_TARGET/debug/server" serve --addr 127.0.0.1:0 --assets dist \
  --db "$(mktemp -d)/hub.db" --max-stream-secs 2 --heartbeat-secs 1 \
  --cors-origin "http://$WASM_BINDGEN_TEST_ADDRESS"
# A server that never answers, or holds the body back: the wrapper's hanging-network cases.
start_server HUB_STALLING_SERVER "$HUB_TARGET/debug/stalling-server"
# The runner's whole-suite limit (20 s by default) is less than the suite's waits add up to.
export WASM_BINDGEN_TEST_TIMEOUT=180
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export CHROMEDRIVER=${CHROMEDRIVER:-$(command -v chromedriver)}
run_tests cargo test "${WASM_TESTS[@]}"

step "soak: its result"
wait "$soak" || { cat "$soak_log"; echo "the soak failed" >&2; exit 1; }
cat "$soak_log"

step "all checks and tests passed"
awk '/^ *test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
