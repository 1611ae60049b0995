#!/usr/bin/env bash
# Installs what the tests need from Debian's packages, skipping what is there: nginx (the
# multi-host test's TLS proxies, with its stream module) and promtool (the alert rules'
# check, from the prometheus package).
set -euo pipefail

missing=()
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] && command -v nginx >/dev/null 2>&1 || missing+=(nginx-core libnginx-mod-stream)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" != 0 ]; then
  # Not root: nothing can be installed, and the multi-host test skips (saying why).
  echo "warning: not root, so ${missing[*]} cannot be installed: the deployment checks need promtool, the multi-host test root and nginx" >&2
  exit 0
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing ${missing[*]} (Debian packages) for the tests." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
