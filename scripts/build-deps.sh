#!/usr/bin/env bash
# Installs what building EmoStream needs besides the Rust toolchain, skipping what is there:
# OpenSSL's headers and pkg-config (Debian packages), for the Kafka client's TLS and SASL.
set -euo pipefail

if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists openssl; then
  echo "Installing OpenSSL's headers and pkg-config (Debian packages) for the Kafka client's TLS." >&2
  apt-get update -qq >&2
  apt-get install -y -qq libssl-dev pkg-config >&2
fi
