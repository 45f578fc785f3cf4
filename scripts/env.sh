# Sourced by the other scripts: decides how wasm is built here and puts the project's tools on PATH.
#
# HUB_WASM_MODE=rustup: rustup provides the wasm32-unknown-unknown std (a normal machine).
# HUB_WASM_MODE=debian: it cannot (offline); Debian's rustc-web is linked as the rustup
# toolchain `web` and selected with RUSTUP_TOOLCHAIN for every cargo call.
# The choice is cached in $HUB_TOOLS/wasm-mode; set HUB_WASM_MODE yourself to override it.
# HUB_TARGET is cargo's target folder (CARGO_TARGET_DIR when set). trunk runs offline: setup
# installed the tools it would fetch and fetched the crates.
HUB_TOOLS=${HUB_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/notify-hub}
mkdir -p "$HUB_TOOLS"
export PATH="$HUB_TOOLS/bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if [ -z "${HUB_WASM_MODE:-}" ]; then
  if [ -f "$HUB_TOOLS/wasm-mode" ]; then
    HUB_WASM_MODE=$(cat "$HUB_TOOLS/wasm-mode")
  elif rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
    || timeout 120 rustup target add wasm32-unknown-unknown >/dev/null 2>&1; then
    HUB_WASM_MODE=rustup
  else
    HUB_WASM_MODE=debian
  fi
  echo "$HUB_WASM_MODE" > "$HUB_TOOLS/wasm-mode"
fi
export HUB_WASM_MODE HUB_TOOLS
if [ "$HUB_WASM_MODE" = debian ]; then
  export RUSTUP_TOOLCHAIN=web
fi
HUB_TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")
export HUB_TARGET
export TRUNK_OFFLINE=true
# trunk 0.21 refuses NO_COLOR values other than true and false (NO_COLOR=1 is common).
if [ -n "${NO_COLOR:-}" ]; then export NO_COLOR=true; fi
