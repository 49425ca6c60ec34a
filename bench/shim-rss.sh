#!/usr/bin/env bash
# Resident memory of an idle shim holding one running container:
# berth-shim-runc-v2 against Debian's containerd-shim-runc-v2, both started
# by a private containerd (temporary root, state and sockets) through ctr.
#
#   sudo bash bench/shim-rss.sh            # build the shim, settle 30 s
#   BERTH_BIN_DIR=bin SETTLE=60 bash bench/shim-rss.sh
#
# The shim is built with CGO_ENABLED=0 unless BERTH_BIN_DIR provides one.
# Both shims run the same busybox container (sh -c 'sleep 3600'). After
# SETTLE seconds the script prints VmRSS, its anonymous and file-backed
# parts, and PSS (file pages shared between processes are split among
# them) from /proc/<pid>/status and smaps_rollup.
set -euo pipefail

SETTLE=${SETTLE:-30}
REPO=$(cd "$(dirname "$0")/.." && pwd)

need() { command -v "$1" >/dev/null || { echo "shim-rss: needs $1" >&2; exit 1; }; }
[ "$(id -u)" = 0 ] || { echo "shim-rss: needs root" >&2; exit 1; }
for c in containerd ctr containerd-shim-runc-v2 runc busybox; do need "$c"; done

T=$(mktemp -d /tmp/b-rss.XXXXXX)
CTD_PID=
cleanup() {
	set +e
	if [ -n "$CTD_PID" ]; then
		for id in ctd berth; do
			ctr -a "$T/c.sock" task kill -s KILL "$id" >/dev/null 2>&1
		done
		sleep 0.5
		for id in ctd berth; do
			ctr -a "$T/c.sock" task delete "$id" >/dev/null 2>&1
			ctr -a "$T/c.sock" container delete "$id" >/dev/null 2>&1
		done
		kill "$CTD_PID" 2>/dev/null
		wait "$CTD_PID" 2>/dev/null
	fi
	grep -o " $T[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
	rm -rf "$T"
}
trap cleanup EXIT

if [ -n "${BERTH_BIN_DIR:-}" ] && [ -x "$BERTH_BIN_DIR/berth-shim-runc-v2" ]; then
	cp "$BERTH_BIN_DIR/berth-shim-runc-v2" "$T/berth-shim-runc-v2"
else
	(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$T/berth-shim-runc-v2" ./cmd/berth-shim-runc-v2)
fi

mkdir -p "$T/rootfs/bin" "$T/rootfs/proc" "$T/rootfs/dev" "$T/rootfs/sys" "$T/rootfs/tmp"
cp /usr/bin/busybox "$T/rootfs/bin/"
for a in sh sleep; do ln -s busybox "$T/rootfs/bin/$a"; done

cat >"$T/config.toml" <<TOML
version = 2
root = "$T/root"
state = "$T/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$T/c.sock"
[ttrpc]
  address = "$T/c.sock.ttrpc"
TOML
containerd --config "$T/config.toml" >"$T/containerd.log" 2>&1 &
CTD_PID=$!
for _ in $(seq 100); do [ -S "$T/c.sock" ] && break; sleep 0.1; done
ctr -a "$T/c.sock" version >/dev/null

ctr -a "$T/c.sock" run -d --rootfs "$T/rootfs" ctd /bin/sh -c 'sleep 3600'
ctr -a "$T/c.sock" run -d --runtime "$T/berth-shim-runc-v2" --rootfs "$T/rootfs" berth /bin/sh -c 'sleep 3600'

shim_pid() { pgrep -f "$1 -namespace default -id $2 " | head -1; }
CTD_SHIM=$(shim_pid /usr/bin/containerd-shim-runc-v2 ctd)
BERTH_SHIM=$(shim_pid "$T/berth-shim-runc-v2" berth)

echo "settling ${SETTLE}s (idle shims, running containers)..."
sleep "$SETTLE"

kb() { awk -v k="$2:" '$1 == k {print $2}' "$1"; }
printf '%-26s %8s %9s %9s %8s %8s\n' shim 'RSS kB' 'anon kB' 'file kB' 'PSS kB' threads
for s in "containerd-shim-runc-v2 $CTD_SHIM" "berth-shim-runc-v2 $BERTH_SHIM"; do
	set -- $s
	printf '%-26s %8s %9s %9s %8s %8s\n' "$1" \
		"$(kb /proc/$2/status VmRSS)" "$(kb /proc/$2/status RssAnon)" "$(kb /proc/$2/status RssFile)" \
		"$(kb /proc/$2/smaps_rollup Pss)" "$(kb /proc/$2/status Threads)"
done
