#!/usr/bin/env bash
# Unpack of a 6-layer gzip image of ~300 MB (uncompressed files) into
# overlayfs: berthd against Debian's containerd 1.6, both driven the same
# way by ctr 1.6 (which unpacks client-side through the daemon's snapshots
# and diff services), plus berth's server-side unpack, and the raw limit:
# `gunzip -c | tar -x` of the same layers, in order, into one folder.
# Every measurement starts on a fresh daemon root with the page cache
# flushed of dirty data (sync); the median of the runs is printed.
# BENCH_DIR=/dev/shm puts the daemon roots and the raw folder on tmpfs,
# which takes the disk out and compares the CPU work alone.
# Usage: [BENCH_DIR=dir] bench/unpack.sh [runs] [size]   (as root; needs containerd, ctr, jq, bc)
source "$(dirname "$0")/lib.sh"
RUNS=${1:-3}
SIZE=${2:-300M}
NAME=docker.io/berth/bench:latest

WORK=$BENCH_TMP
if [ -n "${BENCH_DIR:-}" ]; then
	WORK=$(mktemp -d "$BENCH_DIR/bu-XXXXXX")
	trap '{ grep -o " $WORK[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r m; do umount -l "$m" || true; done; rm -rf "$WORK"; bench_cleanup' EXIT
fi

archive="$BENCH_TMP/bench.tar"
(cd "$(dirname "$0")/.." && go run ./bench/genimage -layers 6 -size "$SIZE" -oci-archive "$archive") >/dev/null
layout="$BENCH_TMP/layout"
mkdir -p "$layout"
tar -xf "$archive" -C "$layout"
manifest=$(jq -r '.manifests[0].digest' "$layout/index.json")
mapfile -t layers < <(jq -r '.layers[].digest' "$layout/blobs/sha256/${manifest#sha256:}")
echo "image: ${#layers[@]} layers, archive $(du -h "$archive" | cut -f1), $SIZE of files; roots on $(stat -f -c %T "$WORK")"

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

# daemon KIND DIR: start a fresh berthd or containerd in DIR; sets SOCK, PID.
daemon() {
	if [ "$1" = berth ]; then
		start_berthd "$2"; wait_berthd "$2"; SOCK="$2/b.sock"; PID=$BERTHD_PID
	else
		start_containerd "$2"; wait_containerd "$2"; SOCK="$2/c.sock"; PID=$CONTAINERD_PID
	fi
}

finish() { # DIR: stop the daemon and drop its root
	stop_pid "$PID"
	rm -rf "$1"
}

# ctr_import KIND RUN: ms of `ctr images import` with unpack.
ctr_import() {
	local d="$WORK/$1-import-$2"
	daemon "$1" "$d"
	sync
	local t0=$(now_ns)
	ctr -a "$SOCK" images import "$archive" >/dev/null
	ms_since "$t0"
	finish "$d"
}

# ctr_unpack KIND RUN: ms of `ctr snapshots unpack` after an import
# without unpack: the unpack alone.
ctr_unpack() {
	local d="$WORK/$1-unpack-$2"
	daemon "$1" "$d"
	ctr -a "$SOCK" images import --no-unpack "$archive" >/dev/null
	sync
	local t0=$(now_ns)
	ctr -a "$SOCK" snapshots unpack "$manifest" >/dev/null
	ms_since "$t0"
	finish "$d"
}

# berth_unpack RUN: ms of berth's server-side `berth images unpack`.
berth_unpack() {
	local d="$WORK/berth-server-$1"
	daemon berth "$d"
	"$BIN/berth" -a "$SOCK" images import --no-unpack "$archive" >/dev/null
	sync
	local t0=$(now_ns)
	"$BIN/berth" -a "$SOCK" images unpack "$NAME" >/dev/null
	ms_since "$t0"
	finish "$d"
}

# raw RUN: ms of gunzip | tar -x of every layer into one folder.
raw() {
	local root="$WORK/raw-$1"
	mkdir -p "$root"
	sync
	local t0=$(now_ns)
	for l in "${layers[@]}"; do
		gunzip -c "$layout/blobs/sha256/${l#sha256:}" | tar -x -C "$root"
	done
	ms_since "$t0"
	rm -rf "$root"
}

declare -A results
for i in $(seq "$RUNS"); do
	for m in "ctr_import berth" "ctr_import containerd" "ctr_unpack berth" "ctr_unpack containerd" "berth_unpack" "raw"; do
		read -r fn kind <<<"$m"
		v=$($fn $kind "$i")
		results[$fn-$kind]+="$v "
		echo "run $i: $fn $kind: $v ms"
	done
done
med() { tr ' ' '\n' <<<"${results[$1]}" | grep . | median; }
bi=$(med ctr_import-berth); ci=$(med ctr_import-containerd)
bu=$(med ctr_unpack-berth); cu=$(med ctr_unpack-containerd)
bs=$(med berth_unpack-); rw=$(med raw-)
echo
printf "%-44s %10s %12s %8s\n" "median of $RUNS (ms)" berth containerd ratio
printf "%-44s %10s %12s %8s\n" "ctr images import (with unpack)" "$bi" "$ci" "$(ratio "$bi" "$ci")"
printf "%-44s %10s %12s %8s\n" "ctr snapshots unpack (unpack alone)" "$bu" "$cu" "$(ratio "$bu" "$cu")"
printf "%-44s %10s %12s %8s\n" "berth images unpack (server-side)" "$bs" "-" "$(ratio "$bs" "$cu")"
printf "%-44s %10s\n" "raw limit: gunzip | tar -x" "$rw"
echo
echo "unpack, berth / containerd 1.6: $(ratio "$bu" "$cu") (ctr-driven), $(ratio "$bs" "$cu") (server-side)"
echo "unpack, berth / raw limit:      $(ratio "$bu" "$rw") (ctr-driven), $(ratio "$bs" "$rw") (server-side)"
