#!/usr/bin/env bash
# berthd start-up: time from exec to answering a version call, and idle RSS,
# against Debian's containerd 1.6 on an empty temp root. Prints ratios.
# Usage: bench/startup.sh [runs]   (as root; needs containerd, bc)
source "$(dirname "$0")/lib.sh"
RUNS=${1:-10}

measure() { # kind
	local kind=$1 total=0 rss=0
	for i in $(seq "$RUNS"); do
		local d="$BENCH_TMP/$kind-$i"
		local t0=$(now_ns)
		if [ "$kind" = berthd ]; then
			start_berthd "$d"; wait_berthd "$d"; pid=$BERTHD_PID
		else
			start_containerd "$d"; wait_containerd "$d"; pid=$CONTAINERD_PID
		fi
		local ms=$(ms_since "$t0")
		sleep 1 # let start-up work settle before reading RSS
		rss=$(rss_kb "$pid")
		total=$(echo "$total + $ms" | bc)
		stop_pid "$pid"
	done
	echo "$(echo "scale=1; $total / $RUNS" | bc) $rss"
}

read -r b_ms b_rss < <(measure berthd)
read -r c_ms c_rss < <(measure containerd)
printf "%-28s %10s %10s %8s\n" metric berthd containerd ratio
printf "%-28s %10s %10s %8s\n" "start to ready (ms)" "$b_ms" "$c_ms" "$(ratio "$b_ms" "$c_ms")"
printf "%-28s %10s %10s %8s\n" "idle RSS (KiB)" "$b_rss" "$c_rss" "$(ratio "$b_rss" "$c_rss")"
