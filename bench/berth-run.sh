#!/usr/bin/env bash
# `berth run --rm busybox true`, end to end through the CLI (create, attach,
# start, exit, removal), against `ctr run --rm` on Debian's containerd 1.6
# and bare `runc run` of a prepared bundle. Each side runs the same
# one-layer busybox image (bare runc: the same files in a plain folder).
# Prints the median and mean wall time per run and the ratios.
#
#   sudo bash bench/berth-run.sh [runs]        # default 20 runs each, after 2 warm-up runs
#   BERTH_BIN_DIR=bin bash bench/berth-run.sh
source "$(dirname "$0")/lib.sh"
RUNS=${1:-20}
REPO=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "berth-run: needs root" >&2; exit 1; }
for c in containerd ctr runc bc; do command -v "$c" >/dev/null || { echo "berth-run: needs $c" >&2; exit 1; }; done
IMAGE=docker.io/library/busybox:latest

(cd "$REPO" && go run ./bench/genimage -layers 1 -size 4K -name "$IMAGE" -oci-archive "$BENCH_TMP/busybox.tar") >/dev/null

# times_ms CMD...: runs CMD RUNS times after 2 warm-ups, one line of
# milliseconds per run.
times_ms() {
	for i in 1 2; do "$@" warm$i >/dev/null; done
	for i in $(seq "$RUNS"); do
		local t0=$(now_ns)
		"$@" run$i >/dev/null
		ms_since "$t0"
	done
}

# stats: median and mean of the numbers on stdin.
stats() {
	sort -n | awk '{a[NR]=$1; s+=$1} END {m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.1f %.1f\n", m, s/NR}'
}

# berthd
start_berthd "$BENCH_TMP/berth"
wait_berthd "$BENCH_TMP/berth"
B=("$BIN/berth" -a "$BENCH_TMP/berth/b.sock")
"${B[@]}" load -i "$BENCH_TMP/busybox.tar" >/dev/null
berth_run() { "${B[@]}" run --rm --name "$1" "$IMAGE" true; }
read -r b_med b_mean < <(times_ms berth_run | stats)
stop_pid "$BERTHD_PID"

# containerd 1.6 through ctr
start_containerd "$BENCH_TMP/ctd"
wait_containerd "$BENCH_TMP/ctd"
C=(ctr -a "$BENCH_TMP/ctd/c.sock")
"${C[@]}" images import "$BENCH_TMP/busybox.tar" >/dev/null
ctr_run() { "${C[@]}" run --rm "$IMAGE" "$1" true; }
read -r c_med c_mean < <(times_ms ctr_run | stats)
stop_pid "$CONTAINERD_PID"

# bare runc: a bundle with the image's files in a plain folder
RB="$BENCH_TMP/runc"
mkdir -p "$RB/bundle/rootfs" "$RB/root"
tar -xf "$BENCH_TMP/busybox.tar" -C "$RB" 2>/dev/null
for blob in "$RB"/blobs/sha256/*; do
	# (grep -c reads everything: grep -q would cut tar off, failing the pipe)
	if [ "$(tar -tf "$blob" 2>/dev/null | grep -c '^bin/busybox$')" -gt 0 ]; then tar -xf "$blob" -C "$RB/bundle/rootfs"; fi
done
(cd "$RB/bundle" && runc spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"true"/' config.json)
runc_run() { runc --root "$RB/root" run -b "$RB/bundle" "$1"; }
read -r r_med r_mean < <(times_ms runc_run | stats)

printf "%-34s %10s %10s\n" "run --rm busybox true ($RUNS runs)" "median ms" "mean ms"
printf "%-34s %10s %10s\n" "berth run --rm (CLI, berthd)" "$b_med" "$b_mean"
printf "%-34s %10s %10s\n" "ctr run --rm (containerd 1.6)" "$c_med" "$c_mean"
printf "%-34s %10s %10s\n" "runc run (bare bundle)" "$r_med" "$r_mean"
echo "ratios (median): berth/runc $(ratio "$b_med" "$r_med"), berth/containerd $(ratio "$b_med" "$c_med")"
