#!/usr/bin/env bash
# Installs the system packages Parley needs to build and test, if any are missing.
# cmake: the opus crate builds its bundled libopus; libasound2-dev: cpal's ALSA backend;
# iproute2 + nftables: the NAT lab tests build network namespaces; pkg-config for -sys crates.
# coturn: its turnutils_natdiscovery checks the supernode's RFC 5780 STUN; systemd:
# systemd-analyze verifies the units in packaging/; tmux: the terminal UI test drives
# `parley ui` in a real terminal.
set -euo pipefail
packages=(cmake libasound2-dev pkg-config iproute2 nftables coturn systemd tmux)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing system packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
