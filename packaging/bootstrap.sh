#!/usr/bin/env bash
# Set up a Debian/Ubuntu machine for pysshfs: the system packages it needs, a .venv in the
# repository, and pysshfs installed there (editable) with its test and lint dependencies.
# Idempotent: run it as often as you like. Needs root or sudo only when packages are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# fuse3: libfuse3 + fusermount3; openssh-*: the test server and ssh-keygen/ssh-agent;
# sshfs, git and fio: the comparison benchmark and the git/editor tests.
# debhelper, dh-python: build the .deb (packaging/build-deb.sh); python3-bcrypt,
# python3-cachetools, python3-invoke, python3-nacl: what the .deb depends on besides the
# above, so that the package test installs it without downloading; systemd: the
# fstab generator and systemd-analyze for the fstab/systemd tests; util-linux: mount, setpriv.
PACKAGES=(fuse3 openssh-server openssh-client sshfs git fio python3 python3-venv python3-pip
          debhelper dh-python python3-bcrypt python3-cachetools python3-invoke python3-nacl
          python3-cryptography systemd util-linux)

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO="sudo"
        else
            echo "bootstrap: missing packages ${missing[*]}, and neither root nor sudo" \
                 "to install them (run as root: apt-get install ${missing[*]})" >&2
            exit 1
        fi
    fi
    echo "bootstrap: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q -e '.[test,lint]'
echo "bootstrap: ready ($(.venv/bin/python --version), $(.venv/bin/pysshfs -V 2>&1 | sed -n 1p))"
