#!/usr/bin/env bash
# make-test-images.sh OUTDIR [NAME...]
#
# Generates byte-deterministic OCI image layouts (OCI image-layout spec v1.0:
# `oci-layout`, `index.json`, `blobs/sha256/<hex>`) for the integration tests and
# for manual runs, usable as `skopeo copy [--all] oci:OUTDIR/NAME:TAG docker://…`
# (dockerlist: `skopeo copy --all dir:OUTDIR/dockerlist docker://…`).
#
#   busybox     one gzip layer (/bin/busybox + applet symlinks), OCI manifest, tag 1.0;
#               the same layout also holds the `artifact` manifest under tag `sbom`
#   big         busybox layer + a BIG_MIB MiB (default 100) incompressible layer, tag 1.0
#   multi       OCI image index over linux/amd64 + linux/arm64 manifests, tag 1.0
#   dockerlist  Docker manifest list over two Docker schema2 manifests; written as a
#               containers/image `dir:` directory (see below), not an OCI layout
#   artifact    OCI artifact manifest (artifactType application/vnd.example.sbom.v1,
#               empty config, one layer, subject = busybox:1.0 manifest), tag sbom;
#               this layout holds the artifact only (its subject is not included)
#
# With NAME arguments only those layouts are written (default: all).
# OUTDIR/digests.txt lists "NAME TAG DIGEST MEDIATYPE SIZE" for every written tag.
#
# Needs: bash, coreutils, GNU tar, gzip, python3 (stdlib; only for the random
# bytes), and a static busybox at $BUSYBOX (default /bin/busybox).
# Same inputs (busybox binary, BIG_MIB, tool versions) => same bytes and digests.
set -euo pipefail

usage() { echo "usage: $0 OUTDIR [busybox|big|multi|dockerlist|artifact]..." >&2; exit 2; }
[[ $# -ge 1 ]] || usage
OUT=$1
shift
ALL=(busybox big multi dockerlist artifact)
if [[ $# -eq 0 ]]; then WANT=("${ALL[@]}"); else WANT=("$@"); fi
for n in "${WANT[@]}"; do
  [[ " ${ALL[*]} " == *" $n "* ]] || { echo "unknown image: $n" >&2; usage; }
done
wants() { [[ " ${WANT[*]} " == *" $1 "* ]]; }

BIG_MIB=${BIG_MIB:-100}
[[ $BIG_MIB =~ ^[0-9]+$ ]] || { echo "BIG_MIB must be an integer" >&2; exit 2; }
BUSYBOX=${BUSYBOX:-/bin/busybox}
[[ -x $BUSYBOX ]] || { echo "no executable busybox at $BUSYBOX" >&2; exit 1; }

export LC_ALL=C TZ=UTC
umask 022

OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_INDEX=application/vnd.oci.image.index.v1+json
OCI_CONFIG=application/vnd.oci.image.config.v1+json
OCI_LAYER_GZ=application/vnd.oci.image.layer.v1.tar+gzip
OCI_EMPTY=application/vnd.oci.empty.v1+json
DOCKER_MANIFEST=application/vnd.docker.distribution.manifest.v2+json
DOCKER_LIST=application/vnd.docker.distribution.manifest.list.v2+json
DOCKER_CONFIG=application/vnd.docker.container.image.v1+json
DOCKER_LAYER_GZ=application/vnd.docker.image.rootfs.diff.tar.gzip
SBOM_TYPE=application/vnd.example.sbom.v1
REF_NAME=org.opencontainers.image.ref.name

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "$OUT/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------- helpers

# sha256 of a file, bare hex
hexof() { sha256sum "$1" | cut -d' ' -f1; }

# tar_gz SRCDIR OUTBASE: writes OUTBASE.tar (uncompressed, for the diff_id) and
# OUTBASE.tar.gz, both deterministic.
tar_gz() {
  local src=$1 out=$2
  # normalise modes so the umask/checkout of the caller does not leak in
  find "$src" -type d -exec chmod 0755 {} +
  tar --create --file="$out.tar" --directory="$src" \
    --format=gnu --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    --no-acls --no-xattrs --no-selinux .
  gzip -n -c "$out.tar" >"$out.tar.gz"
}

# Descriptor of the last added blob: DIGEST SIZE
DIGEST='' SIZE=''

# add_file LAYOUT FILE: copies FILE into LAYOUT's blob store; sets DIGEST/SIZE.
add_file() {
  local layout=$1 file=$2 hex
  hex=$(hexof "$file")
  mkdir -p "$layout/blobs/sha256"
  [[ -e "$layout/blobs/sha256/$hex" ]] || cp "$file" "$layout/blobs/sha256/$hex"
  chmod 0644 "$layout/blobs/sha256/$hex"
  DIGEST="sha256:$hex"
  SIZE=$(stat -c %s "$file")
}

# add_json LAYOUT STRING: stores the exact bytes of STRING (no newline) as a blob.
add_json() {
  local tmp="$WORK/json.$$"
  printf '%s' "$2" >"$tmp"
  add_file "$1" "$tmp"
  rm -f "$tmp"
}

# desc MEDIATYPE DIGEST SIZE [EXTRA-JSON-MEMBERS]
desc() {
  printf '{"mediaType":"%s","digest":"%s","size":%s%s}' "$1" "$2" "$3" "${4:+,$4}"
}

# layout_init LAYOUT: fresh layout directory
layout_init() {
  rm -rf "$1"
  mkdir -p "$1/blobs/sha256"
  printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$1/oci-layout"
}

# layout_index NAME ENTRY...: writes index.json; each ENTRY is
# "TAG MEDIATYPE DIGEST SIZE"; also appends to digests.txt
layout_index() {
  local name=$1 sep='' e tag mt dg sz entries=''
  shift
  for e in "$@"; do
    read -r tag mt dg sz <<<"$e"
    entries+="$sep$(desc "$mt" "$dg" "$sz" "\"annotations\":{\"$REF_NAME\":\"$tag\"}")"
    sep=','
    printf '%s %s %s %s %s\n' "$name" "$tag" "$dg" "$mt" "$sz" >>"$WORK/digests.txt"
  done
  printf '{"schemaVersion":2,"mediaType":"%s","manifests":[%s]}' "$OCI_INDEX" "$entries" \
    >"$OUT/$name/index.json"
}

# image_config ARCH DIFFID... (OCI and Docker image configs share this shape)
image_config() {
  local arch=$1 ids='' sep='' hist='' d
  shift
  for d in "$@"; do
    ids+="$sep\"$d\""
    hist+="$sep{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"make-test-images.sh\"}"
    sep=','
  done
  printf '{"architecture":"%s","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[%s]}' \
    "$arch" "$ids" "$hist"
}

# ---------------------------------------------------------------- layers

# busybox rootfs: /bin/busybox plus a few applet symlinks
ROOT="$WORK/rootfs-busybox"
mkdir -p "$ROOT/bin" "$ROOT/etc" "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
chmod 0755 "$ROOT/bin/busybox"
for applet in sh ls cat echo true false sleep env wc sha256sum; do
  ln -s busybox "$ROOT/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\n' >"$ROOT/etc/group"
chmod 0644 "$ROOT/etc/passwd" "$ROOT/etc/group"
chmod 1777 "$ROOT/tmp"
tar_gz "$ROOT" "$WORK/busybox-layer"
BB_DIFFID="sha256:$(hexof "$WORK/busybox-layer.tar")"

# tiny single-file layer: tiny_layer TAGNAME CONTENT -> $WORK/tiny-TAGNAME.tar{,.gz}
tiny_layer() {
  local d="$WORK/rootfs-$1"
  mkdir -p "$d/etc"
  printf '%s\n' "$2" >"$d/etc/image-id"
  chmod 0644 "$d/etc/image-id"
  tar_gz "$d" "$WORK/tiny-$1"
}

# ---------------------------------------------------------------- busybox (+ sbom artifact)

BB_MANIFEST_DIGEST='' BB_MANIFEST_SIZE=''
# write_busybox LAYOUT: busybox image into LAYOUT; sets BB_MANIFEST_{DIGEST,SIZE}
write_busybox() {
  local l=$1 cfg layer
  add_file "$l" "$WORK/busybox-layer.tar.gz"
  layer=$(desc "$OCI_LAYER_GZ" "$DIGEST" "$SIZE")
  add_json "$l" "$(image_config amd64 "$BB_DIFFID")"
  cfg=$(desc "$OCI_CONFIG" "$DIGEST" "$SIZE")
  add_json "$l" "{\"schemaVersion\":2,\"mediaType\":\"$OCI_MANIFEST\",\"config\":$cfg,\"layers\":[$layer]}"
  BB_MANIFEST_DIGEST=$DIGEST BB_MANIFEST_SIZE=$SIZE
}

SBOM_DIGEST='' SBOM_SIZE=''
# write_sbom LAYOUT: artifact manifest whose subject is the busybox manifest
write_sbom() {
  local l=$1 cfg layer subject
  add_json "$l" '{}'
  cfg=$(desc "$OCI_EMPTY" "$DIGEST" "$SIZE")
  add_json "$l" "{\"spdxVersion\":\"SPDX-2.3\",\"name\":\"busybox\",\"packages\":[{\"name\":\"busybox\"}]}"
  layer=$(desc "application/spdx+json" "$DIGEST" "$SIZE" '"annotations":{"org.opencontainers.image.title":"sbom.spdx.json"}')
  subject=$(desc "$OCI_MANIFEST" "$BB_MANIFEST_DIGEST" "$BB_MANIFEST_SIZE")
  add_json "$l" "{\"schemaVersion\":2,\"mediaType\":\"$OCI_MANIFEST\",\"artifactType\":\"$SBOM_TYPE\",\"config\":$cfg,\"layers\":[$layer],\"subject\":$subject,\"annotations\":{\"org.opencontainers.image.created\":\"1970-01-01T00:00:00Z\"}}"
  SBOM_DIGEST=$DIGEST SBOM_SIZE=$SIZE
}

# The busybox manifest digest is needed by `artifact` even when `busybox` is not written.
if wants busybox || wants artifact; then
  L="$OUT/busybox"
  wants busybox || L="$WORK/busybox"
  layout_init "$L"
  write_busybox "$L"
  write_sbom "$L"
  if wants busybox; then
    layout_index busybox \
      "1.0 $OCI_MANIFEST $BB_MANIFEST_DIGEST $BB_MANIFEST_SIZE" \
      "sbom $OCI_MANIFEST $SBOM_DIGEST $SBOM_SIZE"
  fi
fi

if wants artifact; then
  L="$OUT/artifact"
  layout_init "$L"
  write_sbom "$L"
  layout_index artifact "sbom $OCI_MANIFEST $SBOM_DIGEST $SBOM_SIZE"
fi

# ---------------------------------------------------------------- big

if wants big; then
  L="$OUT/big"
  layout_init "$L"
  d="$WORK/rootfs-big"
  mkdir -p "$d/data"
  # Deterministic, incompressible: Mersenne Twister seeded with 42, 1 MiB at a time.
  python3 - "$d/data/random.bin" "$BIG_MIB" <<'PY'
import random, sys
rng = random.Random(42)
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2])):
        f.write(rng.randbytes(1 << 20))
PY
  chmod 0644 "$d/data/random.bin"
  find "$d" -type d -exec chmod 0755 {} +
  tar --create --file="$WORK/big-layer.tar" --directory="$d" \
    --format=gnu --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    --no-acls --no-xattrs --no-selinux .
  rm -f "$d/data/random.bin"
  BIG_DIFFID="sha256:$(hexof "$WORK/big-layer.tar")"
  gzip -n -1 -c "$WORK/big-layer.tar" >"$WORK/big-layer.tar.gz"
  rm -f "$WORK/big-layer.tar"
  add_file "$L" "$WORK/busybox-layer.tar.gz"
  l1=$(desc "$OCI_LAYER_GZ" "$DIGEST" "$SIZE")
  add_file "$L" "$WORK/big-layer.tar.gz"
  l2=$(desc "$OCI_LAYER_GZ" "$DIGEST" "$SIZE")
  rm -f "$WORK/big-layer.tar.gz"
  add_json "$L" "$(image_config amd64 "$BB_DIFFID" "$BIG_DIFFID")"
  cfg=$(desc "$OCI_CONFIG" "$DIGEST" "$SIZE")
  add_json "$L" "{\"schemaVersion\":2,\"mediaType\":\"$OCI_MANIFEST\",\"config\":$cfg,\"layers\":[$l1,$l2]}"
  layout_index big "1.0 $OCI_MANIFEST $DIGEST $SIZE"
fi

# ---------------------------------------------------------------- multi / dockerlist

# platform_manifest LAYOUT ARCH FLAVOUR MANIFEST_MT CONFIG_MT LAYER_MT -> descriptor in $PM
PM=''
platform_manifest() {
  local l=$1 arch=$2 flavour=$3 mmt=$4 cmt=$5 lmt=$6 layer cfg variant=''
  tiny_layer "$flavour-$arch" "$flavour linux/$arch"
  add_file "$l" "$WORK/tiny-$flavour-$arch.tar.gz"
  layer=$(desc "$lmt" "$DIGEST" "$SIZE")
  add_json "$l" "$(image_config "$arch" "sha256:$(hexof "$WORK/tiny-$flavour-$arch.tar")")"
  cfg=$(desc "$cmt" "$DIGEST" "$SIZE")
  add_json "$l" "{\"schemaVersion\":2,\"mediaType\":\"$mmt\",\"config\":$cfg,\"layers\":[$layer]}"
  [[ $arch == arm64 ]] && variant=',"variant":"v8"'
  PM=$(desc "$mmt" "$DIGEST" "$SIZE" "\"platform\":{\"architecture\":\"$arch\",\"os\":\"linux\"$variant}")
}

if wants multi; then
  L="$OUT/multi"
  layout_init "$L"
  platform_manifest "$L" amd64 oci "$OCI_MANIFEST" "$OCI_CONFIG" "$OCI_LAYER_GZ"; a=$PM
  platform_manifest "$L" arm64 oci "$OCI_MANIFEST" "$OCI_CONFIG" "$OCI_LAYER_GZ"; b=$PM
  add_json "$L" "{\"schemaVersion\":2,\"mediaType\":\"$OCI_INDEX\",\"manifests\":[$a,$b]}"
  layout_index multi "1.0 $OCI_INDEX $DIGEST $SIZE"
fi

# skopeo 1.9 (containers/image 5.23) only accepts OCI media types in an OCI layout's
# index.json and would convert the list to an OCI index, so the Docker list is written
# in containers/image's `dir:` transport format instead (version, manifest.json,
# <hex>.manifest.json per instance, blobs as <hex>), which keeps every byte as is:
#   skopeo copy --all dir:OUTDIR/dockerlist docker://HOST/REPO:1.0
if wants dockerlist; then
  S="$WORK/dockerlist"
  layout_init "$S"
  platform_manifest "$S" amd64 docker "$DOCKER_MANIFEST" "$DOCKER_CONFIG" "$DOCKER_LAYER_GZ"; a=$PM; ma=$DIGEST
  platform_manifest "$S" arm64 docker "$DOCKER_MANIFEST" "$DOCKER_CONFIG" "$DOCKER_LAYER_GZ"; b=$PM; mb=$DIGEST
  add_json "$S" "{\"schemaVersion\":2,\"mediaType\":\"$DOCKER_LIST\",\"manifests\":[$a,$b]}"
  L="$OUT/dockerlist"
  rm -rf "$L"
  mkdir -p "$L"
  printf 'Directory Transport Version: 1.1\n' >"$L/version"
  for f in "$S"/blobs/sha256/*; do
    hex=${f##*/}
    case "sha256:$hex" in
      "$DIGEST") cp "$f" "$L/manifest.json" ;;
      "$ma" | "$mb") cp "$f" "$L/$hex.manifest.json" ;;
      *) cp "$f" "$L/$hex" ;;
    esac
  done
  chmod 0644 "$L"/*
  printf '%s %s %s %s %s\n' dockerlist 1.0 "$DIGEST" "$DOCKER_LIST" "$SIZE" >>"$WORK/digests.txt"
fi

# ---------------------------------------------------------------- summary

touch "$WORK/digests.txt"
if [[ -f "$OUT/digests.txt" ]]; then
  # keep lines of layouts not rewritten in this run
  while read -r name rest; do
    wants "$name" || printf '%s %s\n' "$name" "$rest"
  done <"$OUT/digests.txt" >>"$WORK/digests.txt"
fi
sort "$WORK/digests.txt" >"$OUT/digests.txt"
cat "$OUT/digests.txt"
