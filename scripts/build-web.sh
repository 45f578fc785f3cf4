#!/usr/bin/env bash
# Builds the web app into dist/: cargo builds the wasm, wasm-bindgen writes its JS glue,
# wasm-opt shrinks it, and frontend/index.html is filled in with content-hashed file names
# (the server caches those forever). Then every file is precompressed: the server sends the
# .gz files to browsers that accept gzip (the wasm shrinks to about 40%). Prints what a
# browser downloads on a first visit (the budget is 150 KB gzipped).
#
#   scripts/build-web.sh         size-optimised release build (about a minute)
#   scripts/build-web.sh --dev   debug build without wasm-opt, for the development loop
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

profile=wasm-release
[ "${1:-}" = --dev ] && profile=dev
out=target/wasm32-unknown-unknown/$([ "$profile" = dev ] && echo debug || echo "$profile")
cargo build -p frontend --bin frontend --target wasm32-unknown-unknown --profile "$profile"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
wasm-bindgen --target web --no-typescript --out-dir "$stage" "$out/frontend.wasm"
if [ "$profile" != dev ]; then
  # Function names and the producers section only help a debugger: --strip-* drops them.
  wasm-opt -Oz --strip-debug --strip-producers --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    -o "$stage/frontend_bg.wasm" "$stage/frontend_bg.wasm"
fi
cp frontend/style.css "$stage/style.css"

# Content-hashed names, as `name-<16 hex digits>.ext`.
hashed() { echo "$1-$(sha256sum "$stage/$2" | cut -c1-16)$3"; }
wasm=$(hashed frontend frontend_bg.wasm _bg.wasm)
js=$(hashed frontend frontend.js .js)
css=$(hashed style style.css .css)

rm -rf dist && mkdir dist
mv "$stage/frontend_bg.wasm" "dist/$wasm"
mv "$stage/frontend.js" "dist/$js"
mv "$stage/style.css" "dist/$css"
sed -e "s|@JS@|$js|g" -e "s|@WASM@|$wasm|g" -e "s|@CSS@|$css|g" frontend/index.html > dist/index.html

find dist -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.css' -o -name '*.html' \) \
  -exec gzip -9 --keep --force {} +
for ext in wasm js css html; do
  printf '%s %s\n' "$ext" "$(cat dist/*."$ext".gz | wc -c)"
done | awk -v profile="$profile" '{ printf "web app (%s): %-4s %7d B gzipped\n", profile, $1, $2; total += $2 }
            END { printf "web app (%s): all  %7d B gzipped (%.1f KB; budget 150 KB)\n", profile, total, total / 1000 }'
