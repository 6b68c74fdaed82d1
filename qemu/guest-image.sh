#!/usr/bin/env bash
# Builds the Linux guest image that runs one vpr replica inside a VM:
#
#   qemu/guest-image.sh OUT_DIR VPR_BINARY
#
# Produces, in OUT_DIR:
#   vmlinuz              the kernel of Debian's bookworm package that linux-image-amd64
#                        points at (downloaded with `apt-get download`, never installed)
#   kernel-version       its version (e.g. 6.1.0-56-amd64) and package version
#   initramfs.cpio.gz    gzip'ed newc cpio: busybox (from busybox-static) and its applet
#                        links, VPR_BINARY as /bin/vpr with its shared libraries and dynamic
#                        loader, the NIC modules (virtio_net, virtio_pci, e1000), those of the
#                        data share (9pnet_virtio, 9p), msr (/dev/cpu/N/msr, for the MSR
#                        probes of the smoke run), what they depend on, and /init
#                        (qemu/guest/init)
#   initramfs.files      the archive's listing
#   cache/               the downloaded .debs and their extracted trees
#
# Per-VM files (cluster.toml, ...) are added without rebuilding: see qemu/guest-config.sh.
# Re-running with unchanged inputs only hashes them and exits; the .debs are downloaded once.
# Nothing is written outside OUT_DIR (except apt-get installing cpio/gzip/dpkg-deb/binutils
# on the host if they are missing).
#
# Environment (optional):
#   VPR_GUEST_KERNEL_PACKAGE  kernel package to use (default: what linux-image-amd64 depends on)
#   VPR_GUEST_MODULES         module names to include (default: "virtio_net virtio_pci e1000
#                             9pnet_virtio 9p msr")
#   VPR_GUEST_STRIP           1 (default): strip debug info from the copy of vpr; 0: copy as is
#   VPR_GUEST_PAL             a PAL image (vpr-pal-image) to put at /usr/lib/vpr/vpr-pal-image,
#                             copied as is (its SHA-256 is its identity): the replicas' PAL
#   VPR_GUEST_TEST_PAL        the test PAL image (built with --features bare) to put at
#                             /usr/lib/vpr/vpr-pal-image-test, for `vpr pal-smoke`
set -euo pipefail

die() { echo "guest-image: error: $*" >&2; exit 1; }
say() { echo "guest-image: $*" >&2; }

[ $# -eq 2 ] || die "usage: $0 OUT_DIR VPR_BINARY"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
INIT_SRC="$HERE/guest/init"
[ -f "$INIT_SRC" ] || die "missing $INIT_SRC"
[ -f "$2" ] || die "VPR_BINARY '$2' does not exist (build it: cargo build -p vpr-host --bin vpr)"
[ -x "$2" ] || die "VPR_BINARY '$2' is not executable"
mkdir -p "$1" || die "cannot create OUT_DIR '$1'"
OUT=$(cd "$1" && pwd)
VPR_BIN=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
CACHE="$OUT/cache"
mkdir -p "$CACHE"
MODULES=${VPR_GUEST_MODULES:-virtio_net virtio_pci e1000 9pnet_virtio 9p msr}
STRIP=${VPR_GUEST_STRIP:-1}
PAL=${VPR_GUEST_PAL:-}
if [ -n "$PAL" ]; then
    [ -f "$PAL" ] || die "VPR_GUEST_PAL '$PAL' does not exist"
    PAL=$(realpath "$PAL")
fi
TEST_PAL=${VPR_GUEST_TEST_PAL:-}
if [ -n "$TEST_PAL" ]; then
    [ -f "$TEST_PAL" ] || die "VPR_GUEST_TEST_PAL '$TEST_PAL' does not exist"
    TEST_PAL=$(realpath "$TEST_PAL")
fi

# --- host tools -------------------------------------------------------------------------------
need_pkgs=()
command -v cpio >/dev/null || need_pkgs+=(cpio)
command -v gzip >/dev/null || need_pkgs+=(gzip)
command -v dpkg-deb >/dev/null || need_pkgs+=(dpkg)
command -v ldd >/dev/null || need_pkgs+=(libc-bin)
if [ "$STRIP" = 1 ] && ! command -v objcopy >/dev/null; then need_pkgs+=(binutils); fi
command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian host"
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing host tools (${need_pkgs[*]}); install them as root: apt-get install -y ${need_pkgs[*]}"
    say "installing host tools: ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >&2 \
        || die "apt-get install ${need_pkgs[*]} failed"
fi

# --- which packages -----------------------------------------------------------------------------
apt_updated=0
apt_update_once() {
    if [ $apt_updated = 0 ] && [ "$(id -u)" = 0 ]; then
        say "running apt-get update"
        apt-get update -q >&2 || die "apt-get update failed"
        apt_updated=1
        return 0
    fi
    return 1
}

candidate() { # the candidate version of package $1, empty if unknown
    apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { if ($2 != "(none)") print $2; exit }'
}

KPKG=${VPR_GUEST_KERNEL_PACKAGE:-}
if [ -z "$KPKG" ]; then
    KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
    if [ -z "$KPKG" ] && apt_update_once; then
        KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
    fi
    [ -n "$KPKG" ] || die "cannot tell which kernel linux-image-amd64 points at (apt-cache depends linux-image-amd64)"
fi
KVER=${KPKG#linux-image-}

# Downloads package $1 (its candidate version) into the cache unless it is there; prints the
# .deb's path.
fetch_deb() {
    local pkg=$1 ver deb
    ver=$(candidate "$pkg")
    if [ -z "$ver" ] && apt_update_once; then ver=$(candidate "$pkg"); fi
    [ -n "$ver" ] || die "apt knows no package '$pkg'"
    deb="$CACHE/${pkg}_${ver//:/%3a}_amd64.deb"
    if [ ! -f "$deb" ]; then
        say "downloading $pkg $ver"
        (cd "$CACHE" && apt-get -q -o APT::Sandbox::User=root download "$pkg=$ver" >&2) \
            || die "apt-get download $pkg=$ver failed (is the network or the apt mirror reachable?)"
        [ -f "$deb" ] || die "apt-get download did not produce $deb"
    fi
    echo "$deb"
}

# Extracts .deb $1 into $2 (once).
extract_deb() {
    local deb=$1 dir=$2
    if [ ! -f "$dir/.extracted" ] || [ "$(cat "$dir/.extracted")" != "$(basename "$deb")" ]; then
        say "extracting $(basename "$deb")"
        rm -rf "$dir" "$dir.tmp"
        mkdir -p "$dir.tmp"
        dpkg-deb -x "$deb" "$dir.tmp" || die "dpkg-deb -x $deb failed"
        basename "$deb" >"$dir.tmp/.extracted"
        mv "$dir.tmp" "$dir"
    fi
}

KDEB=$(fetch_deb "$KPKG")
BDEB=$(fetch_deb busybox-static)
KDIR="$CACHE/kernel"
BDIR="$CACHE/busybox"
extract_deb "$KDEB" "$KDIR"
extract_deb "$BDEB" "$BDIR"
BUSYBOX="$BDIR/bin/busybox"
[ -x "$BUSYBOX" ] || die "no bin/busybox in $(basename "$BDEB")"
[ -f "$KDIR/boot/vmlinuz-$KVER" ] || die "no boot/vmlinuz-$KVER in $(basename "$KDEB")"
MODDIR="$KDIR/lib/modules/$KVER"
[ -d "$MODDIR" ] || die "no lib/modules/$KVER in $(basename "$KDEB")"
# The package carries no modules.dep (its postinst runs depmod): make one with busybox's
# depmod, which runs on the host (static) and writes only inside the extracted tree.
if [ ! -f "$MODDIR/modules.dep" ]; then
    say "generating modules.dep"
    "$BUSYBOX" depmod -b "$KDIR" "$KVER" || die "busybox depmod failed"
fi

# --- kernel -----------------------------------------------------------------------------------
if ! cmp -s "$KDIR/boot/vmlinuz-$KVER" "$OUT/vmlinuz"; then
    cp "$KDIR/boot/vmlinuz-$KVER" "$OUT/vmlinuz.tmp"
    mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
fi
kv_text="$KVER $(basename "$KDEB" | cut -d_ -f2 | sed 's/%3a/:/')"
[ "$(cat "$OUT/kernel-version" 2>/dev/null)" = "$kv_text" ] || echo "$kv_text" >"$OUT/kernel-version"

# --- modules, in load order -------------------------------------------------------------------
declare -A DEPS=() PATH_OF=() SEEN=()
while IFS= read -r line; do
    ko=${line%%:*}
    name=${ko##*/}
    name=${name%.ko}
    name=${name//-/_}
    PATH_OF[$name]=$ko
    DEPS[$ko]=${line#*:}
done <"$MODDIR/modules.dep"
ORDER=()
visit() { # depth-first: dependencies before the module that needs them
    local ko=$1 dep
    [ -z "${SEEN[$ko]:-}" ] || return 0
    SEEN[$ko]=1
    for dep in ${DEPS[$ko]}; do visit "$dep"; done
    ORDER+=("$ko")
}
for m in $MODULES; do
    m=${m//-/_}
    if [ -z "${PATH_OF[$m]:-}" ]; then
        if grep -q "/$m.ko\$" "$MODDIR/modules.builtin" 2>/dev/null; then
            say "module $m is built into the kernel: nothing to load"
            continue
        fi
        die "module $m not found in $KPKG"
    fi
    visit "${PATH_OF[$m]}"
done

# --- shared libraries of vpr ------------------------------------------------------------------
LIBS=()
ldd_out=$(ldd "$VPR_BIN" 2>&1) || true
if ! grep -q "not a dynamic executable" <<<"$ldd_out"; then
    if grep -q "not found" <<<"$ldd_out"; then die "ldd $VPR_BIN: a library is missing: $ldd_out"; fi
    while read -r lib; do LIBS+=("$lib"); done < <(
        awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out" | sort -u)
fi

# --- up to date? ------------------------------------------------------------------------------
stamp=$({
    echo "format 1 modules=$MODULES strip=$STRIP pal=${PAL:+yes} test-pal=${TEST_PAL:+yes}"
    if [ -n "$PAL" ]; then sha256sum "$PAL" | cut -d' ' -f1; fi
    if [ -n "$TEST_PAL" ]; then sha256sum "$TEST_PAL" | cut -d' ' -f1; fi
    basename "$KDEB"; basename "$BDEB"
    sha256sum "$VPR_BIN" "$INIT_SRC" "${BASH_SOURCE[0]}" "${LIBS[@]}" | cut -d' ' -f1
} | sha256sum | cut -d' ' -f1)
if [ -f "$OUT/initramfs.cpio.gz" ] && [ "$(cat "$OUT/initramfs.stamp" 2>/dev/null)" = "$stamp" ]; then
    say "up to date: $OUT/initramfs.cpio.gz (kernel $KVER)"
    exit 0
fi

# --- staging tree -----------------------------------------------------------------------------
ST="$OUT/staging"
rm -rf "$ST"
mkdir -p "$ST"/{bin,sbin,usr/bin,usr/sbin,etc/vpr,etc/vpr-guest,proc,sys,dev,tmp,run,root,var/lib/vpr,lib/modules/"$KVER"}
chmod 1777 "$ST/tmp"
chmod 0700 "$ST/root"

cp "$BUSYBOX" "$ST/bin/busybox"
while IFS= read -r applet; do
    case "$applet" in ""|bin/busybox|linuxrc) continue ;; esac
    mkdir -p "$ST/$(dirname "$applet")"
    [ -e "$ST/$applet" ] || ln -s /bin/busybox "$ST/$applet"
done < <("$BUSYBOX" --list-full)
[ -L "$ST/bin/sh" ] || die "busybox gave no bin/sh applet"

if [ "$STRIP" = 1 ]; then
    objcopy --strip-debug "$VPR_BIN" "$ST/bin/vpr" || die "objcopy --strip-debug $VPR_BIN failed"
else
    cp "$VPR_BIN" "$ST/bin/vpr"
fi
chmod 0755 "$ST/bin/vpr"
if [ -n "$PAL" ]; then
    mkdir -p "$ST/usr/lib/vpr"
    cp "$PAL" "$ST/usr/lib/vpr/vpr-pal-image"
    chmod 0644 "$ST/usr/lib/vpr/vpr-pal-image"
fi
if [ -n "$TEST_PAL" ]; then
    mkdir -p "$ST/usr/lib/vpr"
    cp "$TEST_PAL" "$ST/usr/lib/vpr/vpr-pal-image-test"
    chmod 0644 "$ST/usr/lib/vpr/vpr-pal-image-test"
fi
for lib in "${LIBS[@]}"; do
    mkdir -p "$ST/$(dirname "$lib")"
    cp -L "$lib" "$ST/$lib"
done

: >"$ST/etc/vpr-guest/modules"
for ko in "${ORDER[@]}"; do
    mkdir -p "$ST/lib/modules/$KVER/$(dirname "$ko")"
    cp "$MODDIR/$ko" "$ST/lib/modules/$KVER/$ko"
    echo "/lib/modules/$KVER/$ko" >>"$ST/etc/vpr-guest/modules"
done
# A modules.dep of just these, so busybox modprobe also works from the guest's shell.
for ko in "${ORDER[@]}"; do echo "$ko:${DEPS[$ko]}"; done >"$ST/lib/modules/$KVER/modules.dep"

install -m 0755 "$INIT_SRC" "$ST/init"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ST/etc/passwd"
printf 'root:x:0:\n' >"$ST/etc/group"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$ST/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$ST/etc/nsswitch.conf"
printf 'export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1='"'"'\\h:\\w\\$ '"'"'\n' >"$ST/etc/profile"
echo "$kv_text" >"$ST/etc/vpr-guest/kernel-version"

# --- archive ------------------------------------------------------------------------------------
# Owners are recorded as 0:0 whoever runs this (cpio -R), and mtimes are fixed, so no root
# is needed and the output depends only on the inputs. No device nodes: /init mounts devtmpfs.
find "$ST" -exec touch -h -d @0 {} +
cpio_flags=(-o -H newc -R 0:0 --quiet)
if cpio --help 2>&1 | grep -q -- --reproducible; then cpio_flags+=(--reproducible); fi
(cd "$ST" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort | cpio "${cpio_flags[@]}") \
    | gzip -n -6 >"$OUT/initramfs.cpio.gz.tmp" || die "building the cpio archive failed"
(cd "$ST" && find . -mindepth 1 -printf '%M %10s %P %l\n' | LC_ALL=C sort -k3) >"$OUT/initramfs.files"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
echo "$stamp" >"$OUT/initramfs.stamp"
unpacked=$(du -sb "$ST" | cut -f1)
rm -rf "$ST"

say "kernel:    $OUT/vmlinuz ($KVER, $(stat -c %s "$OUT/vmlinuz") bytes)"
say "initramfs: $OUT/initramfs.cpio.gz ($(stat -c %s "$OUT/initramfs.cpio.gz") bytes, $unpacked unpacked)"
say "modules:   $(for ko in "${ORDER[@]}"; do basename "$ko" .ko; done | tr '\n' ' ')"
