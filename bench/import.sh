#!/usr/bin/env bash
# Image archive import without unpacking: `berth images import --no-unpack`
# against `ctr images import --no-unpack` on Debian's containerd 1.6, both
# cold (fresh daemon roots), on the same generated ~200 MB 6-layer archive.
# Usage: bench/import.sh [runs] [size]   (as root)
source "$(dirname "$0")/lib.sh"
RUNS=${1:-3}
SIZE=${2:-400M} # uncompressed; gzip brings it to about 200 MB

archive="$BENCH_TMP/bench.tar"
(cd "$(dirname "$0")/.." && go run ./bench/genimage -layers 6 -size "$SIZE" -oci-archive "$archive") >/dev/null
echo "archive: $(du -h "$archive" | cut -f1)"

berth_ms() {
	local d="$BENCH_TMP/b$1"
	start_berthd "$d"; wait_berthd "$d"
	local t0=$(now_ns)
	"$BIN/berth" -a "$d/b.sock" images import --no-unpack "$archive" >/dev/null
	ms_since "$t0"
	stop_pid "$BERTHD_PID"
}

ctr_ms() {
	local d="$BENCH_TMP/c$1"
	start_containerd "$d"; wait_containerd "$d"
	local t0=$(now_ns)
	ctr -a "$d/c.sock" images import --no-unpack "$archive" >/dev/null
	ms_since "$t0"
	stop_pid "$CONTAINERD_PID"
}

b_total=0; c_total=0
for i in $(seq "$RUNS"); do
	b=$(berth_ms "$i"); c=$(ctr_ms "$i")
	echo "run $i: berth ${b} ms, containerd ${c} ms"
	b_total=$(echo "$b_total + $b" | bc); c_total=$(echo "$c_total + $c" | bc)
done
b_avg=$(echo "scale=1; $b_total / $RUNS" | bc); c_avg=$(echo "scale=1; $c_total / $RUNS" | bc)
printf "%-32s %10s %12s %8s\n" metric berth containerd ratio
printf "%-32s %10s %12s %8s\n" "import --no-unpack (ms)" "$b_avg" "$c_avg" "$(ratio "$b_avg" "$c_avg")"
