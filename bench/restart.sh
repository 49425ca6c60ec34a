#!/usr/bin/env bash
# Daemon restart with COUNT running containers: time from starting the
# daemon again (after kill -9) until `ctr tasks ls` lists all of them
# RUNNING, berthd (berth's shim) against containerd 1.6 (its shim), median
# of ROUNDS restarts each.
#
#   sudo bash bench/restart.sh          # COUNT=100 ROUNDS=3
set -euo pipefail
. "$(dirname "$0")/lib.sh"

COUNT=${COUNT:-100}
ROUNDS=${ROUNDS:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=docker.io/library/busybox:latest
[ "$(id -u)" = 0 ] || { echo "restart.sh: needs root" >&2; exit 1; }
for c in ctr containerd containerd-shim-runc-v2 runc busybox; do
	command -v "$c" >/dev/null || { echo "restart.sh: needs $c" >&2; exit 1; }
done

B=$BENCH_TMP/berth C=$BENCH_TMP/ctrd
# Containers outlive their daemon: kill them before the folders go.
remove_all() {
	local sock=$1 ids
	ids=$(ctr -a "$sock" tasks ls 2>/dev/null | awk 'NR > 1 {print $1}') || return 0
	for id in $ids; do ctr -a "$sock" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true; done
	sleep 1
	for id in $ids; do ctr -a "$sock" tasks rm -f "$id" >/dev/null 2>&1 || true; done
	for id in $(ctr -a "$sock" containers ls -q 2>/dev/null); do ctr -a "$sock" containers rm "$id" >/dev/null 2>&1 || true; done
}
cleanup() {
	set +e
	remove_all "$B/b.sock"
	remove_all "$C/c.sock"
	bench_cleanup
}
trap cleanup EXIT

(cd "$REPO" && go build -o "$BENCH_TMP/genimage" ./bench/genimage)
"$BENCH_TMP/genimage" -layers 1 -size 1K -name "$IMAGE" -oci-archive "$BENCH_TMP/bb.tar" >/dev/null

# fill SOCK RUNTIME: COUNT detached containers, 8 started at a time.
# (wait names the ctr processes: the daemons are this shell's children too.)
fill() {
	local sock=$1 rt=$2 i pids=()
	for i in $(seq "$COUNT"); do
		ctr -a "$sock" run -d --runtime "$rt" "$IMAGE" "r$i" sleep 36000 >/dev/null &
		pids+=($!)
		if (( ${#pids[@]} == 8 )); then wait "${pids[@]}"; pids=(); fi
	done
	if (( ${#pids[@]} > 0 )); then wait "${pids[@]}"; fi
}

running() { ctr -a "$1" tasks ls 2>/dev/null | grep -c RUNNING || true; }

# restart_ms START_FN SOCK: time until COUNT tasks are listed running, in
# MS (not through $(...): the daemon must be this shell's child).
restart_ms() {
	local start=$1 sock=$2 t
	t=$(now_ns)
	"$start"
	until [ "$(running "$sock")" = "$COUNT" ]; do sleep 0.005; done
	MS=$(ms_since "$t")
}

median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }

restart_berthd() { start_berthd "$B"; }
restart_containerd() { start_containerd "$C"; }

start_berthd "$B"
wait_berthd "$B"
"$BIN/berth" -a "$B/b.sock" images import "$BENCH_TMP/bb.tar" >/dev/null
fill "$B/b.sock" io.berth.runc.v2
berth_ms=()
for _ in $(seq "$ROUNDS"); do
	kill -9 "$BERTHD_PID"; wait "$BERTHD_PID" 2>/dev/null || true
	restart_ms restart_berthd "$B/b.sock"
	berth_ms+=("$MS")
done

start_containerd "$C"
wait_containerd "$C"
ctr -a "$C/c.sock" images import "$BENCH_TMP/bb.tar" >/dev/null
fill "$C/c.sock" io.containerd.runc.v2
ctrd_ms=()
for _ in $(seq "$ROUNDS"); do
	kill -9 "$CONTAINERD_PID"; wait "$CONTAINERD_PID" 2>/dev/null || true
	restart_ms restart_containerd "$C/c.sock"
	ctrd_ms+=("$MS")
done

BERTH=$(median "${berth_ms[@]}")
CTRD=$(median "${ctrd_ms[@]}")
echo "restart to $COUNT tasks listed running, median of $ROUNDS (ms)"
printf '%-40s %8s   (%s)\n' "berthd, berth-shim-runc-v2" "$BERTH" "${berth_ms[*]}"
printf '%-40s %8s   (%s)\n' "containerd 1.6, containerd-shim-runc-v2" "$CTRD" "${ctrd_ms[*]}"
echo "berthd / containerd: $(ratio "$BERTH" "$CTRD")"
