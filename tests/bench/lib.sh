# Shared by the benchmark scripts of tests/bench (sourced, not run).
#
# Every scenario runs in network namespaces it creates (named
# agb-SCENARIO-PID-N, so runs never collide) and deletes on exit, with the
# processes it started in them. Needs root, iproute2, nftables, awk and a
# build: BUILD_DIR (default build-release, made by tests/bench/run) holds
# agent/arpguard, agent/arpguardd and the helpers tests/bench/*.cc.
#
# The VIPs: N addresses from 10.64.0.1 in steps of 2 (10.64.0.1, .3, .5, ...),
# never adjacent, so the nft interval set holds N elements (adjacent VIPs would
# share one). The prefix case is 10.128.0.0/15 (131,072 addresses).

set -euo pipefail
bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${BUILD_DIR:-$bench_root/build-release}
arpguard=$build/agent/arpguard
arpguardd=$build/agent/arpguardd
helpers=$build/tests/bench
for binary in "$arpguard" "$arpguardd" "$helpers/repair_bench" "$helpers/ready_launch" "$helpers/http_probe"; do
  [ -x "$binary" ] || { echo "missing $binary: build first (tests/bench/run does: meson setup $build -Dbuildtype=release)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "run as root: the benchmarks create network namespaces" >&2; exit 2; }

bench_work=$(mktemp -d "/tmp/arpguard-bench.XXXXXX")
bench_namespaces=()
bench_seq=0
vip_first=10.64.0.1
vip_stride=2
prefix_vip=10.128.0.0/15

bench_cleanup() {
  local ns pid
  for ns in "${bench_namespaces[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  done
  sleep 0.2
  for ns in "${bench_namespaces[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  # BENCH_KEEP=1 keeps the work directory (raw samples, daemon logs) for a look.
  if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $bench_work" >&2; else rm -rf "$bench_work"; fi
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# ns_new NAME_VAR: a fresh namespace (lo up; veth eth0 192.0.2.1/24 up and its
# peer eth1, both ARP-facing), its name stored in NAME_VAR.
ns_new() {
  local name="agb-${bench_scenario:-x}-$$-$((bench_seq += 1))"
  ip netns add "$name"
  bench_namespaces+=("$name")
  ip -n "$name" link set lo up
  ip -n "$name" link add eth0 type veth peer name eth1
  ip -n "$name" addr add 192.0.2.1/24 dev eth0
  ip -n "$name" link set eth0 up
  ip -n "$name" link set eth1 up
  printf -v "$1" '%s' "$name"
}

# ns_del NAME: stops what runs in it, deletes it.
ns_del() {
  local pid
  for pid in $(ip netns pids "$1" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  for _ in $(seq 100); do [ -z "$(ip netns pids "$1" 2>/dev/null)" ] && break; sleep 0.05; done
  for pid in $(ip netns pids "$1" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  ip netns del "$1" 2>/dev/null || true
}

# quiesce: waits until the CPUs have been idle (90 %) for 0.2 s, at most 10 s.
# Deleting a namespace of 100,000 routes and elements goes on in the kernel's
# workers for seconds after `ip netns del` returns, and would slow the next run.
quiesce() {
  local idle_before total_before idle total calm=0
  read -r idle_before total_before < <(awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t }' /proc/stat)
  for _ in $(seq 100); do
    sleep 0.1
    read -r idle total < <(awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t }' /proc/stat)
    if [ $((total - total_before)) -gt 0 ] && [ $(((idle - idle_before) * 100 / (total - total_before))) -ge 90 ]; then
      calm=$((calm + 1)); [ "$calm" -ge 2 ] && return 0
    else
      calm=0
    fi
    idle_before=$idle total_before=$total
  done
}

# vips N: the N VIP addresses, one a line.
vips() {
  awk -v n="$1" -v first="$vip_first" -v stride="$vip_stride" 'BEGIN {
    split(first, o, "."); base = ((o[1] * 256 + o[2]) * 256 + o[3]) * 256 + o[4]
    for (i = 0; i < n; i++) { v = base + i * stride
      printf "%d.%d.%d.%d\n", int(v / 16777216) % 256, int(v / 65536) % 256, int(v / 256) % 256, v % 256 } }'
}

# policy FILE N KIND [EXTRA]: a policy of N VIPs; KIND address, route or prefix
# (N ignored: one VIP, the /15); EXTRA is TOML appended to [agent] (may hold
# further tables after it). State and control socket under the work directory.
# The wire watch is off (bench_watch=true turns it on): the stock batch has no
# equivalent of its log rules, and tests/bench/watch measures what it costs.
bench_watch=false
policy() {
  local file=$1 n=$2 kind=$3 extra=${4:-}
  local dir; dir=$(mktemp -d "$bench_work/state.XXXXXX")
  {
    printf '[agent]\nstate_dir = "%s"\ncontrol_socket = "%s/sock"\n%b\n[arp]\nmethod = "both"\n' "$dir" "$dir" "$extra"
    printf '[watch]\nenabled = %s\n' "$bench_watch"
    case $kind in
      address) vips "$n" | awk '{ printf "[[vip]]\naddress = \"%s\"\n", $1 }' ;;
      route) vips "$n" | awk '{ printf "[[vip]]\naddress = \"%s\"\nas = \"route\"\n", $1 }' ;;
      prefix) printf '[[vip]]\naddress = "%s"\n' "$prefix_vip" ;;
    esac
  } >"$file"
}

# nft_table FILE N KIND: the table arpguard makes for these VIPs (method both,
# ARP-facing eth0 with 192.0.2.1 and eth1 without an address), as `nft -f` input.
nft_table() {
  local file=$1 n=$2 kind=$3
  {
    echo 'table arp arpguard {'
    echo '  set vips {'
    echo '    type ipv4_addr; flags interval;'
    if [ "$kind" = prefix ]; then
      echo "    elements = { $prefix_vip }"
    else
      printf '    elements = {\n'
      vips "$n" | awk '{ printf "      %s,\n", $1 }'
      printf '    }\n'
    fi
    echo '  }'
    echo '  chain input { type filter hook input priority filter; policy accept;'
    echo '    arp operation request arp daddr ip @vips counter drop; }'
    echo '  chain output { type filter hook output priority filter; policy accept;'
    echo '    oifname "eth0" arp saddr ip @vips counter arp saddr ip set 192.0.2.1;'
    echo '    oifname "eth1" arp saddr ip @vips counter drop; }'
    echo '}'
  } >"$file"
}

# ip_batch FILE N KIND: `ip -batch` input for the VIPs (address: addr add on lo;
# route: local routes in table local; prefix: the one local route).
ip_batch() {
  local file=$1 n=$2 kind=$3
  case $kind in
    address) vips "$n" | awk '{ printf "addr add %s/32 dev lo\n", $1 }' ;;
    route) vips "$n" | awk '{ printf "route add local %s/32 dev lo table local\n", $1 }' ;;
    prefix) echo "route add local $prefix_vip dev lo table local" ;;
  esac >"$file"
}

# The stock commands for the whole end state: one shell writing both sysctls,
# one `nft -f`, one `ip -batch`.
stock_script() {  # stock_script NFT_FILE BATCH_FILE
  echo "echo 1 >/proc/sys/net/ipv4/conf/all/arp_ignore && echo 2 >/proc/sys/net/ipv4/conf/all/arp_announce && nft -f '$1' && ip -batch '$2'"
}

# timed NS COMMAND...: runs COMMAND in NS, prints its wall time in ms (measured
# inside the namespace, so `ip netns exec` itself is not counted).
timed() {
  local ns=$1; shift
  ip netns exec "$ns" bash -c 's=$EPOCHREALTIME; "$@" >/dev/null; e=$EPOCHREALTIME; echo "$s $e" | awk "{ printf \"%.1f\\n\", (\$2 - \$1) * 1000 }"' timed "$@"
}

# count_vips NS KIND: VIPs present (addresses on lo, or local routes, in 10.64.0.0/14 or 10.128.0.0/15).
count_vips() {
  case $2 in
    address) ip -n "$1" -4 -o addr show dev lo | grep -c ' inet 10\.6[4-7]\.' || true ;;
    route | prefix) ip -n "$1" -4 route show table local type local | grep -c '^local 10\.\(6[4-7]\|12[89]\)\.' || true ;;
  esac
}

# count_elements NS: "ELEMENTS RULES" of table arp arpguard (a netlink dump).
count_elements() { ip netns exec "$1" "$helpers/repair_bench" count 1 --vips 1; }

# start_daemon NS POLICY LOG: arpguardd in NS, waited for (sd_notify) until
# READY=1, then up to guard_wait seconds (default 0) for STATUS=guarding (ready).
# Sets daemon_pid, ready_ms (exec to READY=1) and guarding_ms (exec to the
# status "guarding N VIP(s)"; -1 if it did not come in time).
guard_wait=0
start_daemon() {
  local out
  out=$(ip netns exec "$1" "$helpers/ready_launch" "$3" 900 "$guard_wait" -- "$arpguardd" --policy "$2") || {
    tail -20 "$3" >&2; return 1; }
  read -r daemon_pid ready_ms guarding_ms <<<"$out"
}

stop_daemon() {  # stop_daemon PID
  kill "$1" 2>/dev/null || true
  for _ in $(seq 200); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
  kill -9 "$1" 2>/dev/null || true
}

# cpu_ns PID: CPU time the process has used, in ns (/proc/PID/schedstat).
cpu_ns() { awk '{ print $1 }' "/proc/$1/schedstat"; }
# cpu_ticks PID: utime + stime of /proc/PID/stat, in clock ticks.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# settle PID: waits until the process has used no CPU for 200 ms (at most 120 s).
settle() {
  local before after
  before=$(cpu_ns "$1")
  for _ in $(seq 600); do
    sleep 0.2
    after=$(cpu_ns "$1")
    [ "$after" = "$before" ] && return 0
    before=$after
  done
}

# Statistics over numbers on stdin.
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
minimum() { sort -g | head -1; }
maximum() { sort -g | tail -1; }
# percentile P: the nearest-rank P-th percentile.
percentile() { sort -g | awk -v p="$1" '{ a[NR] = $1 } END { if (NR == 0) { print "nan"; exit } r = int((p * NR + 99) / 100); if (r < 1) r = 1; print a[r] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
fmt_s() { awk -v ms="$1" 'BEGIN { printf "%.3f", ms / 1000 }'; }
fmt_ms() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms }'; }

load_line() { echo "load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"; }
bench_header() {  # bench_header TITLE
  echo
  echo "### $1"
  echo
  local buildtype
  buildtype=$(grep -o '"name": "buildtype", "value": "[a-z]*"' "$build/meson-info/intro-buildoptions.json" 2>/dev/null | sed 's/.*"value": "//; s/"$//' || true)
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), Linux $(uname -r), $(nproc) CPUs, build ${buildtype:-unknown}; $(load_line | sed 's/, [0-9]* CPUs//') at start"
  echo
}
bench_footer() { echo; echo "Load at end: $(load_line)."; }
