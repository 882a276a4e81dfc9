#!/usr/bin/env bash
# Installs the system packages Parley needs to build and test, if any are missing.
# cmake: the opus crate builds its bundled libopus; libasound2-dev: cpal's ALSA backend;
# iproute2 + nftables: the NAT lab tests build network namespaces; pkg-config for -sys crates.
# coturn: its turnutils_natdiscovery checks the supernode's RFC 5780 STUN; systemd:
# systemd-analyze verifies the units in packaging/; tmux: the terminal UI test drives
# `parley ui` in a real terminal.
# Then Python's pesq, numpy and soundfile (PyPI): the call tests and the quality benchmark
# score speech with wideband PESQ (bench/pesq_score.py); pip builds pesq from source where
# no wheel fits, hence python3-dev and build-essential.
set -euo pipefail
sudo=""
as_root() {
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to install: $*" >&2; exit 1; }
    sudo="sudo"
  fi
}
apt_install() {
  as_root "$@"
  echo "installing system packages: $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

packages=(cmake libasound2-dev pkg-config iproute2 nftables coturn systemd tmux)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import pesq, numpy, soundfile' 2>/dev/null; then
  if ! "$python" -m pip --version >/dev/null 2>&1; then
    apt_install python3 python3-pip python3-dev build-essential
  fi
  echo "installing the PESQ scorer: $python -m pip install pesq numpy soundfile"
  # numpy first: pesq's source build imports it.
  for pkgs in "numpy soundfile" "pesq"; do
    # shellcheck disable=SC2086 # two words on purpose
    "$python" -m pip install --quiet $pkgs ||
      "$python" -m pip install --quiet --user $pkgs ||
      "$python" -m pip install --quiet --break-system-packages $pkgs
  done
  "$python" -c 'import pesq, numpy, soundfile'
fi
