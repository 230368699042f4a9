#!/usr/bin/env bash
# Install the given Debian packages if any of them is missing.
#
# Usage: tools/ensure_apt.sh PACKAGE...
#
# Cheap when everything is there (one `dpkg-query` call, no network). Runs
# `apt-get update` once, and only when something must be installed. Uses sudo
# only when not root.
set -euo pipefail

if [[ $# -eq 0 ]]; then
    exit 0
fi

missing=()
for pkg in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "error: missing system packages (${missing[*]}) and neither root nor sudo" >&2
    exit 1
fi

echo ">>> apt-get install ${missing[*]}"
start=$SECONDS
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo ">>> system packages installed in $((SECONDS - start)) s"
