#!/bin/sh
# Refresh the vendored front-end libraries from the npm registry (no build step; the files are committed).
# Usage, from the repository root:  sh static/vendor/refresh.sh [UPLOT_VERSION] [PICO_VERSION]
# Change the versions here (or pass them), run it, check `git diff --stat static/vendor`, update README.md.
set -eu
UPLOT_VERSION="${1:-1.6.32}"
PICO_VERSION="${2:-2.1.1}"
DEST="$(cd "$(dirname "$0")" && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

cd "$TMP"
npm pack --silent "uplot@$UPLOT_VERSION" "@picocss/pico@$PICO_VERSION" >/dev/null
mkdir uplot pico
tar -xzf "uplot-$UPLOT_VERSION.tgz" -C uplot
tar -xzf "picocss-pico-$PICO_VERSION.tgz" -C pico

mkdir -p "$DEST/uplot" "$DEST/pico"
cp uplot/package/dist/uPlot.iife.min.js uplot/package/dist/uPlot.min.css uplot/package/LICENSE "$DEST/uplot/"
cp pico/package/css/pico.min.css pico/package/LICENSE.md "$DEST/pico/"
sha256sum "uplot-$UPLOT_VERSION.tgz" "picocss-pico-$PICO_VERSION.tgz"
echo "uplot $UPLOT_VERSION and @picocss/pico $PICO_VERSION copied into $DEST"
