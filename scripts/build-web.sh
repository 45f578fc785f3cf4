#!/usr/bin/env bash
# Builds the web app into dist/ (trunk, release) and precompresses it: the server sends
# the .gz files to browsers that accept gzip (the wasm shrinks to about 40%).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
trunk build --release
find dist -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.css' -o -name '*.html' \) \
  -exec gzip -9 --keep --force {} +
