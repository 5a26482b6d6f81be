#!/usr/bin/env bash
# Installs the real data the tests and the main job use: Fashion-MNIST (70 000 28×28 images,
# MIT) from Debian's `dataset-fashion-mnist` into /usr/share/datasets/fashion-mnist.
# Idempotent and fast when already installed. Needs root (or sudo).
set -euo pipefail
if ! dpkg-query -W -f='${Status}' dataset-fashion-mnist 2>/dev/null | grep -q "install ok installed"; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup-data: installing dataset-fashion-mnist"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null
fi
ls /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz >/dev/null
echo "setup-data: Fashion-MNIST in /usr/share/datasets/fashion-mnist"
