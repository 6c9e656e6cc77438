#!/usr/bin/env bash
# Installs Debian's headless browser for the book's page check (tests/test_book.py) when it is missing.
# Debian's chromium + chromium-driver come from the distribution's archive, so selenium never needs
# selenium-manager (which would try to download a browser); the test passes both paths explicitly.
set -euo pipefail

browser="$(command -v chromium || true)"
driver="$(command -v chromedriver || true)"
if [[ -n "$browser" && -n "$driver" ]]; then
    echo "ensure_chromium: found $browser and $driver"
    exit 0
fi

sudo_cmd=()
if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null; then
        sudo_cmd=(sudo)
    else
        echo "ensure_chromium: chromium/chromedriver missing and not root (no sudo): install them with" >&2
        echo "  apt-get update && apt-get install -y chromium chromium-driver" >&2
        echo "the book's page check will be skipped with this reason" >&2
        exit 0
    fi
fi
if ! command -v apt-get >/dev/null; then
    echo "ensure_chromium: no apt-get on this machine; install chromium and chromedriver by other means" >&2
    echo "(the book's page check will be skipped with this reason)" >&2
    exit 0
fi
echo "ensure_chromium: installing chromium and chromium-driver with apt-get"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver
command -v chromium
command -v chromedriver
