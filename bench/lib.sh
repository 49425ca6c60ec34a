# Shared helpers for bench scripts: temp dirs, a berthd and a containerd
# 1.6 side by side, timing. Source it; it cleans up on exit.
set -euo pipefail

BIN=${BERTH_BIN_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/bin}
BENCH_TMP=$(mktemp -d /tmp/bb-XXXXXX)
BENCH_PIDS=()

bench_cleanup() {
	for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${BENCH_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	# Unmount anything a daemon left under our folder, deepest first.
	# (grep finds nothing when no mount is left: not a failure of the script.)
	{ grep -o " $BENCH_TMP[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT

now_ns() { date +%s%N; }

# ms_since START_NS: milliseconds elapsed, with one decimal.
ms_since() { echo "scale=1; ($(now_ns) - $1) / 1000000" | bc; }

rss_kb() { ps -o rss= -p "$1" | tr -d ' '; }

ratio() { echo "scale=2; $1 / $2" | bc; }

# start_berthd DIR: start berthd with its folders under DIR; sets BERTHD_PID.
# Its CNI folder is under DIR too and it has no default network, so nothing
# is written to /etc, no bridge is made on the host, and containers run
# without a network as `ctr run` ones do (bench/network.sh measures the
# network itself).
start_berthd() {
	local d=$1
	mkdir -p "$d"
	cat >"$d/config.toml" <<EOT
version = 1
[plugins."io.berth.network.v1.cni"]
conf_dir = "$d/cni"
default_network = ""
EOT
	"$BIN/berthd" ${BERTHD_FLAGS:-} --config "$d/config.toml" --root "$d/root" --state "$d/state" --address "$d/b.sock" >"$d/log" 2>&1 &
	BERTHD_PID=$!
	BENCH_PIDS+=("$BERTHD_PID")
}

wait_berthd() {
	local d=$1
	until "$BIN/berth" -a "$d/b.sock" version >/dev/null 2>&1; do sleep 0.005; done
}

# start_containerd DIR: Debian's containerd with a temp root; sets CONTAINERD_PID.
start_containerd() {
	local d=$1
	mkdir -p "$d"
	cat >"$d/config.toml" <<EOT
version = 2
root = "$d/root"
state = "$d/state"
[grpc]
  address = "$d/c.sock"
[ttrpc]
  address = "$d/c.sock.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  disable_cgroup = true
EOT
	containerd --config "$d/config.toml" >"$d/log" 2>&1 &
	CONTAINERD_PID=$!
	BENCH_PIDS+=("$CONTAINERD_PID")
}

wait_containerd() {
	local d=$1
	until ctr -a "$d/c.sock" version >/dev/null 2>&1; do sleep 0.005; done
}

stop_pid() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
