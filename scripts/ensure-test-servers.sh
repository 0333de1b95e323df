#!/usr/bin/env bash
# Installs the real servers the tests start that come from Debian's
# packages: Pebble (Let's Encrypt's ACME test server, with its mock DNS
# pebble-challtestsrv) for the certificate tests, and headless Chromium with
# its WebDriver (chromium-driver) for the console's browser tests.
set -euo pipefail
missing=()
command -v pebble >/dev/null || missing+=(pebble)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} (apt)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi
