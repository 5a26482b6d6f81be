#!/usr/bin/env bash
# Installs the aarch64 cross toolchain from Debian packages (see ../shared/CROSS.md, verified on
# Debian 12): Debian's rustc 1.96 with aarch64 std, the cross gcc/binutils, qemu-user and
# qemu-system. Idempotent and fast when already installed. Needs root (or sudo).
set -euo pipefail
need=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user qemu-system-arm rustc-web cargo-web
      rust-web-src libstd-rust-web-dev libstd-rust-web-dev:arm64)
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-aarch64: installing ${missing[*]}"
  $sudo dpkg --add-architecture arm64
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# rustup's stable cannot build for aarch64 (no core); link Debian's toolchain as `deb196`.
if ! rustup toolchain list | grep -q '^deb196'; then
  rustup toolchain link deb196 /usr
fi
echo "setup-aarch64: $(rustc +deb196 --version), $(qemu-aarch64 --version | head -1)"
