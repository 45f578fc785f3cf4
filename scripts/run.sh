#!/usr/bin/env bash
# Sets up (once), builds the web app and starts the server at http://127.0.0.1:8080.
# Extra arguments go to `server serve` (see `cargo run -p server -- serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
trunk build --release
cargo build --release -p server
exec "$HUB_TARGET/release/server" serve "$@"
