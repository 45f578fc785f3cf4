#!/bin/sh
# trunk's post_build hook (Trunk.toml): in release builds, writes a gzip copy beside each
# file of the app, which the server sends to browsers that accept gzip (trunk has no
# compression of its own; the wasm shrinks to about 40 %), and prints what a first visit
# downloads against the budget of 150 KB gzipped. Debug builds (`trunk serve`) skip both.
set -eu
[ "${TRUNK_PROFILE:-}" = release ] || exit 0
cd "$TRUNK_STAGING_DIR"
find . -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.css' -o -name '*.html' -o -name '*.svg' \) \
  -exec gzip -9 --keep --force {} +
for ext in wasm js css html svg; do
  printf '%s %s\n' "$ext" "$(cat ./*."$ext".gz 2>/dev/null | wc -c)"
done | awk '{ printf "web app: %-4s %7d B gzipped\n", $1, $2; total += $2 }
            END { printf "web app: all  %7d B gzipped (%.1f KB; budget 150 KB)\n", total, total / 1000 }'
