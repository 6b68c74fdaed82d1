#!/usr/bin/env bash
# Makes a small gzip'ed newc cpio archive of per-VM files for the vpr guest, to be appended to
# the image's initramfs (Linux unpacks concatenated archives in order, later files replacing
# earlier ones), so each VM gets its own configuration without rebuilding the image:
#
#   qemu/guest-config.sh OUT_CPIO_GZ FILE:/path/in/guest [FILE:/path/in/guest ...]
#   cat OUT_DIR/initramfs.cpio.gz OUT_CPIO_GZ > vm0.initramfs
#   qemu-system-x86_64 ... -kernel OUT_DIR/vmlinuz -initrd vm0.initramfs
#
# e.g. qemu/guest-config.sh vm0.cpio.gz cluster.toml:/etc/vpr/cluster.toml
# Files keep their permission bits; owners are recorded as root (no root needed to build);
# missing parent directories are recorded with mode 0755. Only OUT_CPIO_GZ is written (a
# temporary folder next to it is removed on exit).
set -euo pipefail

die() { echo "guest-config: error: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: $0 OUT_CPIO_GZ FILE:/path/in/guest [FILE:/path/in/guest ...]"
command -v cpio >/dev/null || die "cpio not found (apt-get install -y cpio)"
command -v gzip >/dev/null || die "gzip not found (apt-get install -y gzip)"
out=$1
shift
out_dir=$(dirname "$out")
[ -d "$out_dir" ] || die "folder '$out_dir' does not exist"

work=$(mktemp -d "$out_dir/.guest-config.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/root
mkdir "$stage"

for spec in "$@"; do
    case "$spec" in
        *:/*) ;;
        *) die "'$spec' is not FILE:/absolute/path/in/guest" ;;
    esac
    src=${spec%:/*}
    dst=/${spec##*:/}
    [ -n "$src" ] || die "'$spec': empty FILE"
    [ -f "$src" ] || die "'$spec': '$src' is not a file"
    case "$dst/" in
        */../* | */./* | *//*) die "'$spec': guest path '$dst' must be a plain absolute path" ;;
    esac
    [ "$dst" != / ] || die "'$spec': guest path is /"
    mkdir -p "$stage$(dirname "$dst")"
    cp "$src" "$stage$dst"
done

find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -exec touch -h -d @0 {} +
flags=(-o -H newc -R 0:0 --quiet)
if cpio --help 2>&1 | grep -q -- --reproducible; then flags+=(--reproducible); fi
(cd "$stage" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort | cpio "${flags[@]}") \
    | gzip -n -9 >"$work/out.cpio.gz" || die "building the archive failed"
mv "$work/out.cpio.gz" "$out"
echo "guest-config: $out ($(stat -c %s "$out") bytes): $(cd "$stage" && find . -mindepth 1 -type f -printf '/%P ' )" >&2
