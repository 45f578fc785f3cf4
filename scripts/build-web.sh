#!/usr/bin/env bash
# Builds the web app into dist/ (trunk, release) and precompresses it: the server sends
# the .gz files to browsers that accept gzip (the wasm shrinks to about 40%). Prints what a
# browser downloads on a first visit (the budget is 150 KB gzipped).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
trunk build --release
find dist -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.css' -o -name '*.html' \) \
  -exec gzip -9 --keep --force {} +
for ext in wasm js css html; do
  printf '%s %s\n' "$ext" "$(cat dist/*."$ext".gz | wc -c)"
done | awk '{ printf "web app: %-4s %7d B gzipped\n", $1, $2; total += $2 }
            END { printf "web app: all  %7d B gzipped (%.1f KB; budget 150 KB)\n", total, total / 1000 }'
