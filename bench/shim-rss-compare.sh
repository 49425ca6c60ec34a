#!/usr/bin/env bash
# Resident memory per idle shim with COUNT running containers of each
# kind under one berthd: berth-shim-runc-v2 against Debian's
# containerd-shim-runc-v2 (both started by berthd the same way). After
# SETTLE seconds it prints the mean VmRSS, anonymous RSS and PSS per shim
# (PSS splits the shared file pages among the shims of one binary).
#
#   sudo bash bench/shim-rss-compare.sh        # COUNT=10 SETTLE=20
set -euo pipefail
. "$(dirname "$0")/lib.sh"

COUNT=${COUNT:-10}
SETTLE=${SETTLE:-20}
REPO=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=docker.io/library/busybox:latest
[ "$(id -u)" = 0 ] || { echo "shim-rss-compare.sh: needs root" >&2; exit 1; }
for c in ctr containerd-shim-runc-v2 runc busybox; do
	command -v "$c" >/dev/null || { echo "shim-rss-compare.sh: needs $c" >&2; exit 1; }
done

B=$BENCH_TMP/berth
cleanup() {
	set +e
	local id
	for id in $(ctr -a "$B/b.sock" tasks ls 2>/dev/null | awk 'NR > 1 {print $1}'); do
		ctr -a "$B/b.sock" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1
	done
	sleep 1
	for id in $(ctr -a "$B/b.sock" tasks ls 2>/dev/null | awk 'NR > 1 {print $1}'); do
		ctr -a "$B/b.sock" tasks rm -f "$id" >/dev/null 2>&1
		ctr -a "$B/b.sock" containers rm "$id" >/dev/null 2>&1
	done
	bench_cleanup
}
trap cleanup EXIT

(cd "$REPO" && go build -o "$BENCH_TMP/genimage" ./bench/genimage)
"$BENCH_TMP/genimage" -layers 1 -size 1K -name "$IMAGE" -oci-archive "$BENCH_TMP/bb.tar" >/dev/null
start_berthd "$B"
wait_berthd "$B"
"$BIN/berth" -a "$B/b.sock" images import "$BENCH_TMP/bb.tar" >/dev/null

for i in $(seq "$COUNT"); do
	ctr -a "$B/b.sock" run -d --runtime io.berth.runc.v2 "$IMAGE" "berth-$i" sleep 36000 >/dev/null
	ctr -a "$B/b.sock" run -d --runtime io.containerd.runc.v2 "$IMAGE" "ctrd-$i" sleep 36000 >/dev/null
done
echo "settling ${SETTLE}s ($COUNT idle shims of each kind, running containers)..."
sleep "$SETTLE"

# shims PREFIX: pids of the long-lived shims of containers PREFIX-*.
shims() {
	local p
	for p in $(pgrep -f "shim-runc-v2 -namespace default -id $1-"); do
		grep -qw start "/proc/$p/cmdline" 2>/dev/null || echo "$p"
	done
}
kb() { awk -v k="$2:" '$1 == k {print $2}' "$1"; }
# mean PREFIX FIELD FILE: the mean of FIELD over the shims' /proc files.
mean() {
	local sum=0 n=0 p
	for p in $(shims "$1"); do sum=$((sum + $(kb "/proc/$p/$3" "$2"))); n=$((n + 1)); done
	echo $((sum / n))
}

printf '%-26s %6s %9s %9s %8s\n' "shim (mean of $COUNT)" shims 'RSS kB' 'anon kB' 'PSS kB'
for s in "berth-shim-runc-v2 berth" "containerd-shim-runc-v2 ctrd"; do
	set -- $s
	printf '%-26s %6s %9s %9s %8s\n' "$1" "$(shims "$2" | wc -l)" \
		"$(mean "$2" VmRSS status)" "$(mean "$2" RssAnon status)" "$(mean "$2" Pss smaps_rollup)"
done
BR=$(mean berth VmRSS status) CR=$(mean ctrd VmRSS status)
BP=$(mean berth Pss smaps_rollup) CP=$(mean ctrd Pss smaps_rollup)
echo "berth / containerd RSS: $(ratio "$BR" "$CR")   PSS: $(ratio "$BP" "$CP")   (target <= 0.33)"
