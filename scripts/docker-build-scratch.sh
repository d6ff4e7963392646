#!/usr/bin/env bash
# docker-build-scratch.sh TAG [MARKER]
#
# Builds tests/fixtures/oci/Dockerfile.scratch (FROM scratch + static busybox) with
# the local docker engine and tags it TAG. MARKER (default: TAG) is written to
# /etc/marker in the image so that different tags get different image digests.
# Needs no registry and no network. BUSYBOX overrides the busybox binary (default
# /bin/busybox). The legacy builder is used because buildx may be absent.
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: $0 TAG [MARKER]" >&2; exit 2; }
TAG=$1
MARKER=${2:-$1}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUSYBOX=${BUSYBOX:-/bin/busybox}
CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
cp "$HERE/../tests/fixtures/oci/Dockerfile.scratch" "$CTX/Dockerfile"
cp "$BUSYBOX" "$CTX/busybox"
printf '%s\n' "$MARKER" >"$CTX/marker"
DOCKER_BUILDKIT=0 docker build --quiet --tag "$TAG" "$CTX"
