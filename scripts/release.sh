#!/usr/bin/env bash
# scripts/release.sh [VERSION]: build clawgate's release binaries.
#
# Static (CGO_ENABLED=0), reproducible (-trimpath, no VCS stamp) binaries
# for linux/amd64, linux/arm64 and darwin/arm64, with the version stamped
# into main.version, plus a SHA256SUMS file. Each target is a directory
# with the gateway and its two helpers (the tailnet node and WhatsApp run in
# their own processes, which the gateway finds beside its executable:
# install the three together):
#
#   dist/clawgate-<VERSION>-<os>-<arch>/{clawgate,clawgate-tailnet,clawgate-whatsapp}
#   dist/SHA256SUMS-<VERSION>
#
# VERSION defaults to $VERSION, else `git describe --tags --always --dirty`.
# DIST overrides the output directory (default dist/, git-ignored);
# TARGETS overrides the list ("linux/amd64 darwin/arm64").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VERSION="${1:-${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}}"
DIST="${DIST:-$ROOT/dist}"
TARGETS="${TARGETS:-linux/amd64 linux/arm64 darwin/arm64}"

# The version goes into -ldflags: keep it to characters that cannot break
# out of the flag.
if ! [[ "$VERSION" =~ ^[0-9A-Za-z][0-9A-Za-z._+-]*$ ]]; then
	echo "release: version '$VERSION' must match [0-9A-Za-z][0-9A-Za-z._+-]*" >&2
	exit 2
fi

mkdir -p "$DIST"
files=()
for target in $TARGETS; do
	os="${target%/*}"
	arch="${target#*/}"
	dir="clawgate-$VERSION-$os-$arch"
	mkdir -p "$DIST/$dir"
	for cmd in clawgate clawgate-tailnet clawgate-whatsapp; do
		echo "[release] $dir/$cmd" >&2
		CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" GOFLAGS=-mod=readonly \
			go build -trimpath -buildvcs=false \
			-ldflags "-s -w -X main.version=$VERSION" \
			-o "$DIST/$dir/$cmd" "./cmd/$cmd"
		files+=("$dir/$cmd")
	done
done

sums="SHA256SUMS-$VERSION"
(
	cd "$DIST"
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "${files[@]}"
	else
		shasum -a 256 "${files[@]}"
	fi
) >"$DIST/$sums"
echo "[release] wrote ${#files[@]} binaries and $sums to $DIST" >&2
