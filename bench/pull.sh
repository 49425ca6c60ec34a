#!/usr/bin/env bash
# Pull and unpack from a local registry (Debian's docker-registry on
# 127.0.0.1): `berth pull` (server-side, layers applied as they land)
# against `ctr images pull --plain-http` on Debian's containerd 1.6, each on
# a fresh daemon root (nothing cached) with dirty pages flushed first.
#  1. one generated 6-layer gzip image of ~300 MB of files;
#  2. three such images sharing their 3 base layers, pulled at once.
# The median of the runs is printed, and containerd/berth (how many times
# faster berth is).
# Usage: bench/pull.sh [runs] [size]   (as root; needs docker-registry, containerd, ctr, bc)
source "$(dirname "$0")/lib.sh"
RUNS=${1:-3}
SIZE=${2:-300M}
REPO=bench/pull

# --- a registry holding the images ------------------------------------------
# A free loopback port: one nothing answers on.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=$((20000 + RANDOM % 40000))
while listening "$port"; do port=$((20000 + RANDOM % 40000)); done
REG=127.0.0.1:$port
cat >"$BENCH_TMP/registry.yml" <<EOT
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $BENCH_TMP/registry
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $REG
EOT
docker-registry serve "$BENCH_TMP/registry.yml" >"$BENCH_TMP/registry.log" 2>&1 &
BENCH_PIDS+=("$!")
until listening "$port"; do sleep 0.05; done

# Generate the images and push them with a scratch berthd.
gen() { (cd "$(dirname "$0")/.." && go run ./bench/genimage "$@") >/dev/null; }
gen -layers 6 -size "$SIZE" -name "docker.io/$REPO:one" -oci-archive "$BENCH_TMP/one.tar"
gen -layers 6 -size "$SIZE" -count 3 -shared 3 -seed 11 -name "docker.io/$REPO:shared" -oci-archive "$BENCH_TMP/shared.tar"
seed="$BENCH_TMP/seed"
start_berthd "$seed"; wait_berthd "$seed"
sb() { "$BIN/berth" -a "$seed/b.sock" "$@"; }
sb load --no-unpack -i "$BENCH_TMP/one.tar" >/dev/null
sb load --no-unpack -i "$BENCH_TMP/shared.tar" >/dev/null
for tag in one shared-1 shared-2 shared-3; do
	sb tag "$REPO:$tag" "$REG/$REPO:$tag" >/dev/null
	sb push -q --plain-http "$REG/$REPO:$tag" >/dev/null
done
stop_pid "$BERTHD_PID"
echo "registry $REG: $(du -sh "$BENCH_TMP/registry" | cut -f1) of blobs; images of $SIZE uncompressed in 6 gzip layers"

# --- timed pulls ----------------------------------------------------------------
# pull_ms KIND DIR TAG...: start KIND on a fresh root in DIR, pull the tags
# at once, print the milliseconds from the first pull's start to the last
# one's end, stop the daemon.
pull_ms() {
	local kind=$1 d=$2
	shift 2
	local pids=() t0
	if [ "$kind" = berth ]; then start_berthd "$d"; wait_berthd "$d"; else start_containerd "$d"; wait_containerd "$d"; fi
	sync
	t0=$(now_ns)
	for tag in "$@"; do
		if [ "$kind" = berth ]; then
			"$BIN/berth" -a "$d/b.sock" pull -q --plain-http "$REG/$REPO:$tag" >"$d/out-$tag" 2>&1 &
		else
			ctr -a "$d/c.sock" images pull --plain-http "$REG/$REPO:$tag" >"$d/out-$tag" 2>&1 &
		fi
		pids+=("$!")
	done
	local failed=0
	for p in "${pids[@]}"; do wait "$p" || failed=1; done
	local ms
	ms=$(ms_since "$t0")
	if [ "$kind" = berth ]; then stop_pid "$BERTHD_PID"; else stop_pid "$CONTAINERD_PID"; fi
	if [ "$failed" = 1 ]; then
		echo "$kind pull failed:" >&2
		cat "$d"/out-* >&2
		exit 1
	fi
	# The root stays until the end: on a journal-less ext4 (as on the CI
	# machines) files made soon after many were deleted are several times
	# slower to create, which would charge one run for its predecessor.
	{ grep -o " $d[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	echo "$ms"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# run_case ID NAME TAG...: alternate berth and containerd runs, print
# medians. ID names the daemons' folders (overlay mount options cannot
# hold commas, so no spaces or punctuation there).
run_case() {
	local id=$1 name=$2
	shift 2
	local b=() c=()
	for i in $(seq "$RUNS"); do
		# Alternate which goes first, so neither always inherits the
		# other's after-effects (writeback, inode allocation).
		if [ $((i % 2)) = 1 ]; then
			b+=("$(pull_ms berth "$BENCH_TMP/b-$id-$i" "$@")")
			c+=("$(pull_ms containerd "$BENCH_TMP/c-$id-$i" "$@")")
		else
			c+=("$(pull_ms containerd "$BENCH_TMP/c-$id-$i" "$@")")
			b+=("$(pull_ms berth "$BENCH_TMP/b-$id-$i" "$@")")
		fi
		echo "  $name run $i: berth ${b[-1]} ms, containerd ${c[-1]} ms"
	done
	local bm cm
	bm=$(median "${b[@]}")
	cm=$(median "${c[@]}")
	RESULTS+=("$(printf "%-34s %10s %12s %8s" "$name (ms)" "$bm" "$cm" "$(ratio "$cm" "$bm")")")
}

RESULTS=()
run_case one "pull+unpack, 1 image" one
run_case shared "pull+unpack, 3 sharing 3 layers" shared-1 shared-2 shared-3
printf "%-34s %10s %12s %8s\n" metric berth containerd "speedup"
printf '%s\n' "${RESULTS[@]}"
