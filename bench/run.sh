#!/usr/bin/env bash
# Latency of `run --rm busybox true`, median of N runs each:
#   - bare `runc run` of the same bundle (the spec berth generates, a
#     busybox rootfs folder): the floor;
#   - through berth's API in one process (bench/runlat: snapshot, container,
#     task create/start/wait/delete, container and snapshot removal);
#   - the same with the ctr-style berth CLI (containers create + tasks
#     start --rm: two processes);
#   - `ctr run --rm` against berthd (berth's shim and Debian's) and against
#     Debian's containerd 1.6 (its own shim): the same client both sides;
#     also with --seccomp, as berth's spec always has the default profile.
#
#   sudo bash bench/run.sh            # N=30
#   N=100 BERTH_BIN_DIR=bin bash bench/run.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"

N=${N:-30}
REPO=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=docker.io/library/busybox:latest
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root" >&2; exit 1; }
for c in runc ctr containerd containerd-shim-runc-v2 busybox; do
	command -v "$c" >/dev/null || { echo "run.sh: needs $c" >&2; exit 1; }
done

(cd "$REPO" && go build -o "$BENCH_TMP/runlat" ./bench/runlat && go build -o "$BENCH_TMP/genimage" ./bench/genimage)
"$BENCH_TMP/genimage" -layers 1 -size 1K -name "$IMAGE" -oci-archive "$BENCH_TMP/bb.tar" >/dev/null

B=$BENCH_TMP/berth C=$BENCH_TMP/ctrd
start_berthd "$B"
start_containerd "$C"
wait_berthd "$B"
wait_containerd "$C"
BERTH=("$BIN/berth" -a "$B/b.sock")
"${BERTH[@]}" images import "$BENCH_TMP/bb.tar" >/dev/null
ctr -a "$C/c.sock" images import "$BENCH_TMP/bb.tar" >/dev/null

# median CMD...: runs CMD (with {} replaced by the run number) N times
# after one warm-up run and prints the median in milliseconds.
median() {
	local i t ms=()
	"${@//\{\}/warm}" >/dev/null
	for i in $(seq "$N"); do
		t=$(now_ns)
		"${@//\{\}/$i}" >/dev/null
		ms+=("$(ms_since "$t")")
	done
	printf '%s\n' "${ms[@]}" | sort -n | sed -n "$(( (N + 1) / 2 ))p"
}

# The bundle for bare runc: berth's spec for `busybox true`, plain rootfs.
R=$BENCH_TMP/bundle
mkdir -p "$R/rootfs/bin" "$R/rootfs/proc" "$R/rootfs/dev" "$R/rootfs/sys" "$R/rootfs/tmp" "$R/rootfs/etc"
cp /usr/bin/busybox "$R/rootfs/bin/"
ln -s busybox "$R/rootfs/bin/true"
"${BERTH[@]}" containers create busybox specsrc true
"${BERTH[@]}" containers info --spec specsrc >"$R/config.json"
"${BERTH[@]}" containers rm specsrc

run_runc() { runc --root "$BENCH_TMP/runc" run --bundle "$R" "bare-$1"; }
# What any shim v2 must do at least: create and start are separate calls of
# the task API, so separate runtime invocations. Delete is left out (berth's
# shim runs it after answering); the stopped containers go after the median.
run_runc_split() {
	runc --root "$BENCH_TMP/runc" create --bundle "$R" --pid-file "$BENCH_TMP/split.pid" "split-$1" </dev/null
	runc --root "$BENCH_TMP/runc" start "split-$1"
}
run_ctr_containerd() { ctr -a "$C/c.sock" run --rm "$IMAGE" "c-$1" true; }
# ctr's default spec has no seccomp filter, berth's has the default profile
# (runc spends about 12 ms compiling it): the same work on both sides.
run_ctr_containerd_seccomp() { ctr -a "$C/c.sock" run --rm --seccomp "$IMAGE" "cs-$1" true; }
run_ctr_berth() { ctr -a "$B/b.sock" run --rm --runtime io.berth.runc.v2 "$IMAGE" "b-$1" true; }
run_ctr_berth_ctrdshim() { ctr -a "$B/b.sock" run --rm --runtime io.containerd.runc.v2 "$IMAGE" "bc-$1" true; }
run_berth_cli() { "${BERTH[@]}" containers create busybox "cli-$1" true && "${BERTH[@]}" tasks start --rm "cli-$1"; }

echo "run --rm busybox true, median of $N (ms)"
RUNC=$(median run_runc {})
SPLIT=$(median run_runc_split {})
for c in $(runc --root "$BENCH_TMP/runc" list -q | grep '^split-'); do runc --root "$BENCH_TMP/runc" delete --force "$c"; done
API=$("$BENCH_TMP/runlat" -q -address "$B/b.sock" -n "$N" | awk '{print $2}')
API_CTRD=$("$BENCH_TMP/runlat" -q -address "$B/b.sock" -n "$N" -runtime io.containerd.runc.v2 | awk '{print $2}')
CLI=$(median run_berth_cli {})
CTR_BERTH=$(median run_ctr_berth {})
CTR_BERTH_CS=$(median run_ctr_berth_ctrdshim {})
CTR_CTRD=$(median run_ctr_containerd {})
CTR_CTRD_SC=$(median run_ctr_containerd_seccomp {})

printf '%-52s %8s\n' "bare runc run (same spec)" "$RUNC"
printf '%-52s %8s\n' "runc create + runc start (the shim v2 floor)" "$SPLIT"
printf '%-52s %8s\n' "berth API, berth shim (runlat)" "$API"
printf '%-52s %8s\n' "berth API, containerd-shim-runc-v2 (runlat)" "$API_CTRD"
printf '%-52s %8s\n' "berth CLI: containers create + tasks start --rm" "$CLI"
printf '%-52s %8s\n' "ctr run --rm on berthd, berth shim" "$CTR_BERTH"
printf '%-52s %8s\n' "ctr run --rm on berthd, containerd-shim-runc-v2" "$CTR_BERTH_CS"
printf '%-52s %8s\n' "ctr run --rm on containerd 1.6" "$CTR_CTRD"
printf '%-52s %8s\n' "ctr run --rm --seccomp on containerd 1.6" "$CTR_CTRD_SC"
echo
echo "berth API / bare runc:             $(ratio "$API" "$RUNC")   (target < 2)"
echo "berth API / ctr on containerd:     $(ratio "$API" "$CTR_CTRD")   (target < 0.5)"
echo "  same seccomp profile both sides:  $(ratio "$API" "$CTR_CTRD_SC")"
echo "ctr on berthd / ctr on containerd: $(ratio "$CTR_BERTH" "$CTR_CTRD")   (same client)"
echo "shim v2 floor / ctr on containerd: $(ratio "$SPLIT" "$CTR_CTRD")   (the best any runc shim could do)"
