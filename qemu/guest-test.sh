#!/usr/bin/env bash
# Checks the guest image under plain QEMU (TCG, no KVM, no hypervisor):
#
#   qemu/guest-test.sh OUT_DIR [VPR_BINARY]
#
# Builds (or reuses) the image with qemu/guest-image.sh OUT_DIR VPR_BINARY (default:
# target/release/vpr, else target/debug/vpr), appends a per-VM archive made with
# qemu/guest-config.sh holding /etc/vpr/marker, and boots it three times:
#   1. vpr.run=smoke with a virtio-net-pci NIC: vpr --version, the marker, an HTTP fetch from a
#      python3 http.server on the host's 127.0.0.1 (the guest's 10.0.2.2);
#   2. the same with an e1000 NIC;
#   3. host -> guest through hostfwd: the guest listens with busybox nc, the host connects to
#      the forwarded port on 127.0.0.1 and exchanges a line.
# Each boot must power itself off (QEMU exits). Prints the timings (QEMU start to "vpr-guest:
# init started" and to QEMU's exit) and the image sizes; the logs are in OUT_DIR/test/.
# Exits non-zero if any check fails.
set -euo pipefail

die() { echo "guest-test: error: $*" >&2; exit 1; }
if [ $# -lt 1 ] || [ $# -gt 2 ]; then die "usage: $0 OUT_DIR [VPR_BINARY]"; fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
OUT=$1
BIN=${2:-}
if [ -z "$BIN" ]; then
    for b in "$ROOT/target/release/vpr" "$ROOT/target/debug/vpr"; do
        if [ -x "$b" ]; then BIN=$b; break; fi
    done
fi
[ -n "$BIN" ] || die "no vpr binary: build it (cargo build -p vpr-host --bin vpr) or pass VPR_BINARY"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (apt-get install -y qemu-system-x86)"
command -v python3 >/dev/null || die "python3 not found"

"$HERE/guest-image.sh" "$OUT" "$BIN"
OUT=$(cd "$OUT" && pwd)
T="$OUT/test"
rm -rf "$T"
mkdir -p "$T/www"
marker="marker-$$-$RANDOM"
echo "$marker" >"$T/marker"
"$HERE/guest-config.sh" "$T/extra.cpio.gz" "$T/marker:/etc/vpr/marker"
cat "$OUT/initramfs.cpio.gz" "$T/extra.cpio.gz" >"$T/combined.cpio.gz"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(free_port)
echo "hello from the host's http server" >"$T/www/index.html"
python3 -m http.server "$HTTP_PORT" --bind 127.0.0.1 --directory "$T/www" >"$T/http.log" 2>&1 &
HTTP_PID=$!
QEMU_PID=""
cleanup() {
    if [ -n "$QEMU_PID" ] && [ -f "$T/qemu.pid" ]; then kill "$(cat "$T/qemu.pid")" 2>/dev/null || true; fi
    kill "$HTTP_PID" 2>/dev/null || true
}
trap cleanup EXIT

now_us() { echo "${EPOCHREALTIME/./}"; }
ms() { echo $((($1) / 1000)); }

failures=0
check() { # check LOG PATTERN WHAT
    if grep -q -- "$2" "$1"; then
        echo "  ok    $3"
    else
        echo "  FAIL  $3 (no '$2' in $1)"
        failures=$((failures + 1))
    fi
}

# boot NAME NIC APPEND [NETDEV_EXTRA]: starts QEMU in the background; its console goes to
# $T/NAME.log, each line prefixed with milliseconds since QEMU started.
boot() {
    local name=$1 nic=$2 append=$3 extra=${4:-}
    local start
    start=$(now_us)
    (
        qemu-system-x86_64 -accel tcg -cpu max -m 512M -smp 1 -nographic -no-reboot \
            -pidfile "$T/qemu.pid" \
            -kernel "$OUT/vmlinuz" -initrd "$T/combined.cpio.gz" \
            -append "console=ttyS0 earlyprintk=serial nokaslr mitigations=off panic=-1 $append" \
            -netdev "user,id=n0$extra" -device "$nic,netdev=n0" </dev/null 2>&1 \
            | while IFS= read -r line; do
                printf '%6d %s\n' "$(ms "$(now_us) - $start")" "${line%$'\r'}"
            done
        echo "$(ms "$(now_us) - $start") qemu-exited"
    ) >"$T/$name.log" &
    QEMU_PID=$!
}

wait_for() { # wait_for LOG PATTERN SECONDS
    local i=0
    while ! grep -q -- "$2" "$1" 2>/dev/null; do
        sleep 0.2
        i=$((i + 1))
        [ $i -lt $(($3 * 5)) ] || return 1
    done
}

report_times() {
    local log=$1 init off
    init=$(awk '/vpr-guest: init started/ { print $1; exit }' "$log")
    off=$(awk '/qemu-exited/ { print $1; exit }' "$log")
    echo "  time  QEMU start -> init: ${init:-?} ms, -> QEMU exit: ${off:-?} ms"
}

smoke() { # smoke NAME NIC DRIVER
    local name=$1 nic=$2 driver=$3
    echo "== $name: vpr.run=smoke, -device $nic"
    boot "$name" "$nic" "vpr.run=smoke vpr.port=$HTTP_PORT"
    wait_for "$T/$name.log" qemu-exited 300 || echo "  FAIL  QEMU still running after 300 s"
    wait "$QEMU_PID" || true
    QEMU_PID=""
    check "$T/$name.log" "Run /init as init process" "kernel reached /init"
    check "$T/$name.log" "vpr-guest: init started" "init started"
    check "$T/$name.log" "vpr-guest: module $driver loaded" "module $driver loaded"
    check "$T/$name.log" "vpr-guest: eth0 up (driver $driver" "eth0 up with $driver"
    check "$T/$name.log" "vpr-guest: vpr --version: vpr " "vpr --version runs"
    check "$T/$name.log" "vpr-guest: marker: $marker" "marker from the appended archive"
    check "$T/$name.log" "vpr-guest: network check OK" "HTTP fetch from the host"
    check "$T/$name.log" "reboot: Power down" "powered off"
    check "$T/$name.log" "qemu-exited" "QEMU exited by itself"
    if grep -q "Kernel panic" "$T/$name.log"; then
        echo "  FAIL  kernel panic"
        failures=$((failures + 1))
    fi
    report_times "$T/$name.log"
}

smoke virtio virtio-net-pci virtio_net
smoke e1000 e1000 e1000

echo "== hostfwd: host 127.0.0.1:HOSTPORT -> guest :5555"
HOST_PORT=$(free_port)
boot hostfwd virtio-net-pci "vpr.run=smoke vpr.listen=5555 vpr.hold=60" ",hostfwd=tcp:127.0.0.1:$HOST_PORT-:5555"
if wait_for "$T/hostfwd.log" "vpr-guest: listening on tcp port 5555" 120; then
    sleep 0.5
    reply=$(python3 - "$HOST_PORT" <<'EOF' 2>&1 || true
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"ping from host\n")
data = b""
try:
    while b"\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
finally:
    s.close()
print(data.decode(errors="replace").strip())
EOF
)
    echo "  host received: '$reply'"
    if [ "$reply" = "pong from vpr-guest" ]; then
        echo "  ok    guest -> host reply through hostfwd"
    else
        echo "  FAIL  guest -> host reply through hostfwd"
        failures=$((failures + 1))
    fi
else
    echo "  FAIL  the guest never started listening"
    failures=$((failures + 1))
fi
wait_for "$T/hostfwd.log" qemu-exited 90 || echo "  FAIL  QEMU still running"
wait "$QEMU_PID" || true
QEMU_PID=""
check "$T/hostfwd.log" "vpr-guest: listen check: received 'ping from host'" "host -> guest line through hostfwd"
check "$T/hostfwd.log" "qemu-exited" "QEMU exited by itself"
report_times "$T/hostfwd.log"

echo "== sizes"
echo "  vmlinuz            $(stat -c %s "$OUT/vmlinuz") bytes ($(cat "$OUT/kernel-version"))"
echo "  initramfs.cpio.gz  $(stat -c %s "$OUT/initramfs.cpio.gz") bytes"
echo "  extra.cpio.gz      $(stat -c %s "$T/extra.cpio.gz") bytes"
if [ $failures -eq 0 ]; then
    echo "guest-test: all checks passed (logs in $T)"
else
    echo "guest-test: $failures check(s) FAILED (logs in $T)"
    exit 1
fi
