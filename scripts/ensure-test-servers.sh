#!/usr/bin/env bash
# Installs the real servers the tests start that come from Debian's
# packages: Pebble (Let's Encrypt's ACME test server, with its mock DNS
# pebble-challtestsrv) for the certificate tests.
set -euo pipefail
missing=()
command -v pebble >/dev/null || missing+=(pebble)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} (apt)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi
