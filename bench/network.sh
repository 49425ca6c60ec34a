#!/usr/bin/env bash
# What networking costs a container's start, through the berth CLI:
#   - `berth start` of a container on the default network with one
#     published port, against one with --network none (medians of N
#     starts each, the extra milliseconds and the ratio); each container
#     is created beforehand and removed afterwards, outside the timing;
#   - `berth run --rm busybox true` on the default network against
#     --network none: the whole life, the network's teardown included;
#   - 20 containers started at once on one user network (with its DNS),
#     against 20 with --network none: wall time and time per container.
# berthd gets its own CNI folder, bridge and subnet: nothing is written to
# /etc and no traffic leaves the host.
#
#   sudo bash bench/network.sh            # N=30
#   N=100 BERTH_BIN_DIR=bin bash bench/network.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"

N=${N:-30}
PAR=${PAR:-20}
REPO=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=docker.io/library/busybox:latest
[ "$(id -u)" = 0 ] || { echo "network.sh: needs root" >&2; exit 1; }
for p in bridge host-local portmap; do
	[ -x /usr/lib/cni/$p ] || [ -x /opt/cni/bin/$p ] || { echo "network.sh: needs the CNI plugin $p (containernetworking-plugins)" >&2; exit 1; }
done
command -v bc >/dev/null || { echo "network.sh: needs bc" >&2; exit 1; }

(cd "$REPO" && go build -o "$BENCH_TMP/genimage" ./bench/genimage)
"$BENCH_TMP/genimage" -layers 1 -size 1K -name "$IMAGE" -oci-archive "$BENCH_TMP/bb.tar" >/dev/null

D=$BENCH_TMP/berth
mkdir -p "$D"
cat >"$D/config.toml" <<EOT
version = 1
[plugins."io.berth.network.v1.cni"]
conf_dir = "$D/cni"
default_bridge = "bb$(printf '%08x' $((RANDOM * 32768 + RANDOM)))"
default_subnet = "10.$((200 + RANDOM % 25)).$((RANDOM % 256)).0/24"
EOT
"$BIN/berthd" --config "$D/config.toml" --root "$D/root" --state "$D/state" --address "$D/b.sock" >"$D/log" 2>&1 &
BENCH_PIDS+=("$!")
wait_berthd "$D"
B=("$BIN/berth" -a "$D/b.sock")
"${B[@]}" load -i "$BENCH_TMP/bb.tar" >/dev/null
"${B[@]}" network create --subnet "10.$((225 + RANDOM % 25)).$((RANDOM % 256)).0/24" benchnet >/dev/null

# start_ms NAME CREATE-FLAGS...: creates a container, times `berth start`
# of it, removes it; prints the milliseconds.
start_ms() {
	local name=$1 t ms
	shift
	"${B[@]}" create --name "$name" "$@" "$IMAGE" sleep 600 >/dev/null
	t=$(now_ns)
	"${B[@]}" start "$name" >/dev/null
	ms=$(ms_since "$t")
	"${B[@]}" rm -f "$name" >/dev/null
	echo "$ms"
}

# median_ms LABEL CREATE-FLAGS...: median of N start_ms after a warm-up.
median_ms() {
	local label=$1 i
	shift
	start_ms "warm-$label" "$@" >/dev/null
	for i in $(seq "$N"); do start_ms "$label-$i" "$@"; done | sort -n | sed -n "$(((N + 1) / 2))p"
}

# parallel_ms LABEL CREATE-FLAGS...: creates PAR containers, starts them
# all at once, prints the wall time in milliseconds, removes them.
parallel_ms() {
	local label=$1 i t ms pids=()
	shift
	for i in $(seq "$PAR"); do "${B[@]}" create --name "$label-$i" "$@" "$IMAGE" sleep 600 >/dev/null; done
	t=$(now_ns)
	for i in $(seq "$PAR"); do
		"${B[@]}" start "$label-$i" >/dev/null &
		pids+=("$!")
	done
	for p in "${pids[@]}"; do wait "$p"; done
	ms=$(ms_since "$t")
	local running
	running=$("${B[@]}" ps -q --filter "name=$label-" | wc -l)
	[ "$running" = "$PAR" ] || { echo "network.sh: only $running of $PAR containers ($label) run" >&2; exit 1; }
	"${B[@]}" rm -f $(seq -f "$label-%g" "$PAR") >/dev/null
	echo "$ms"
}

# runrm_ms FLAGS...: median of N `berth run --rm busybox true`, start to
# removal: the network's teardown at the exit included.
runrm_ms() {
	local i t
	"${B[@]}" run --rm "$@" "$IMAGE" true >/dev/null
	for i in $(seq "$N"); do
		t=$(now_ns)
		"${B[@]}" run --rm "$@" "$IMAGE" true >/dev/null
		ms_since "$t"
	done | sort -n | sed -n "$(((N + 1) / 2))p"
}

none=$(median_ms none --network none)
net=$(median_ms port -p 80)
rm_none=$(runrm_ms --network none)
rm_net=$(runrm_ms)
par_none=$(parallel_ms pnone --network none)
par_net=$(parallel_ms pnet --network benchnet)

echo "berth start, median of $N (ms):"
printf '  %-44s %8s\n' "--network none" "$none"
printf '  %-44s %8s\n' "default network + 1 published port" "$net"
printf '  %-44s %8s  (x%s)\n' "extra for the network" "$(echo "$net - $none" | bc)" "$(ratio "$net" "$none")"
echo "berth run --rm busybox true, median of $N (ms), teardown included:"
printf '  %-44s %8s\n' "--network none" "$rm_none"
printf '  %-44s %8s\n' "default network" "$rm_net"
printf '  %-44s %8s  (x%s)\n' "extra for the network" "$(echo "$rm_net - $rm_none" | bc)" "$(ratio "$rm_net" "$rm_none")"
echo "$PAR containers started at once (ms):"
printf '  %-44s %8s  (%s per container)\n' "--network none" "$par_none" "$(echo "scale=1; $par_none / $PAR" | bc)"
printf '  %-44s %8s  (%s per container)\n' "user network benchnet" "$par_net" "$(echo "scale=1; $par_net / $PAR" | bc)"
printf '  %-44s %8s\n' "ratio" "$(ratio "$par_net" "$par_none")"
"${B[@]}" network rm benchnet >/dev/null
