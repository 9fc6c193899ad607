#!/usr/bin/env bash
# usage: scripts/chromium_env.sh [DIR]   (make chromium-env; DIR defaults to .chromium-env)
#
# Headless Chromium for tests/runtime/test_page_browser.py, which loads `sal-runtime serve`'s page
# and drives it over the DevTools protocol on a pipe (tests/runtime/chromium.py: no driver, no
# Python package). Debian's `chromium` package: nothing to do when a Chromium is already on PATH
# (or $SALKIT_CHROMIUM names one); else apt-get installs it without prompts, as root (CI) or
# through a password-less sudo, and otherwise says what to run. A headless start is checked.
# DIR/.ready is written last and names the binary; the test skips, saying so, without Chromium.
set -euo pipefail
dir=${1:-.chromium-env}

find_chromium() {
    if [ -n "${SALKIT_CHROMIUM:-}" ]; then
        echo "$SALKIT_CHROMIUM"
        return
    fi
    command -v chromium || command -v chromium-browser || command -v google-chrome || command -v google-chrome-stable || true
}

rm -f "$dir/.ready"
mkdir -p "$dir"
binary=$(find_chromium)
if [ -z "$binary" ]; then
    if ! command -v apt-get > /dev/null; then
        echo "no Chromium and no apt-get here: install Chromium, or set SALKIT_CHROMIUM to its binary" >&2
        exit 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif sudo -n true 2> /dev/null; then
        as_root=(sudo -n)
    else
        echo "no Chromium: run 'sudo apt-get install -y chromium' (or set SALKIT_CHROMIUM), then make chromium-env" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq chromium < /dev/null
    binary=$(find_chromium)
    [ -n "$binary" ] || { echo "apt-get installed chromium but it is not on PATH" >&2; exit 1; }
fi
# Root needs --no-sandbox, as in the test.
timeout 120 "$binary" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --user-data-dir="$dir/profile" \
    --dump-dom 'data:text/html,<p>ok</p>' 2> /dev/null | grep -q '<p>ok</p>' \
    || { echo "$binary does not start headless (try: $binary --headless --no-sandbox --dump-dom about:blank)" >&2; exit 1; }
rm -rf "$dir/profile"
echo "$binary" > "$dir/.ready"
echo "Chromium for the browser test: $binary ($("$binary" --version 2> /dev/null | tail -n 1))"
