#!/usr/bin/env bash
# Build the Debian package: bash packaging/build-deb.sh [OUTDIR]   (default: dist/)
#
# Copies what the package needs into a temporary directory, with packaging/debian as
# debian/, and runs `dpkg-buildpackage -us -uc -b` there, so the work tree gets no build
# debris. The wheels bundled into the package (debian/vendor.txt) come from
# packaging/debian/vendor/ when they are there (an offline build), else from PyPI.
# Needs debhelper, dh-python and python3-pip (packaging/bootstrap.sh installs them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=${1:-dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
work=$(mktemp -d "${TMPDIR:-/tmp}/pysshfs-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT

src="$work/pysshfs-$version"
mkdir -p "$src/packaging"
cp -r pysshfs README.md pyproject.toml "$src/"
cp -r packaging/pysshfs.1 packaging/pysshfs.bash-completion packaging/systemd "$src/packaging/"
cp -r packaging/debian "$src/debian"
find "$src" -name __pycache__ -prune -exec rm -rf {} +

mkdir -p "$src/debian/vendor"
if ! ls "$src"/debian/vendor/*.whl >/dev/null 2>&1; then
    /usr/bin/python3 -m pip download -q --disable-pip-version-check --no-deps \
        --only-binary=:all: -d "$src/debian/vendor" -r packaging/debian/vendor.txt
fi

(cd "$src" && dpkg-buildpackage -us -uc -b)
cp "$work"/pysshfs_"$version"_*.deb "$out/"
ls "$out"/pysshfs_"$version"_*.deb
