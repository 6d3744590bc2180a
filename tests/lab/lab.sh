# The LVS-DR lab: a whole Direct Routing segment in network namespaces.
# Sourced by tests/lab/demo and the lab tests; needs root.
#
#   client   192.0.2.100 2001:db8::100 --+
#   director 192.0.2.2   2001:db8::2   --+-- br0 (namespace "sw")
#   rs1      192.0.2.11  2001:db8::11  --+
#   rs2      192.0.2.12  2001:db8::12  --+
#   rs3      192.0.2.13  2001:db8::13  --+   (only when LAB_RS_NAMES has it)
#
# The director owns three VIPs: 192.0.2.80 and 2001:db8::80 on its eth0, and
# the prefix 198.51.100.0/28, which the client routes to it. The kernel here
# has no IPVS, so the director is an nftables netdev ingress chain on its eth0:
# TCP to a VIP on ports 80 or 8080 gets the director's source MAC and a real
# server's destination MAC (jhash of client address and port) and is sent back
# out; nothing else is touched. Each real server runs an HTTP server on port 80
# (and one on 18080 for port mappings) that answers with its name and the
# address it was asked at. Namespaces are named lab-$$-ROLE so labs can run
# side by side; lab_down removes everything, and callers trap it on EXIT.

LAB_VIP=192.0.2.80
LAB_VIP6=2001:db8::80
LAB_PREFIX_VIP=198.51.100.0/28
LAB_CLIENT_IP=192.0.2.100
LAB_DIRECTOR_IP=192.0.2.2
LAB_DIRECTOR_MAC=02:00:00:00:00:02
LAB_RS_NAMES=${LAB_RS_NAMES:-"rs1 rs2"}
LAB_PREFIX="lab-$$"
LAB_DIR=$(mktemp -d /tmp/arpguard-lab.XXXXXX)
LAB_ARPGUARD=${ARPGUARD_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/agent/arpguard}
LAB_ARPGUARDD=${ARPGUARDD_BIN:-$(dirname "$LAB_ARPGUARD")/arpguardd}
LAB_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

lab_ns() { echo "$LAB_PREFIX-$1"; }
lab_in() { local ns; ns=$(lab_ns "$1"); shift; ip netns exec "$ns" "$@"; }
lab_rs_ip() { echo "192.0.2.1${1#rs}"; }
lab_rs_ip6() { echo "2001:db8::1${1#rs}"; }
lab_rs_mac() { echo "02:00:00:00:00:1${1#rs}"; }

# lab_host ROLE IP IP6 MAC: a namespace whose eth0 is a port of the switch's br0.
lab_host() {
  local role=$1 ip=$2 ip6=$3 mac=$4 ns
  ns=$(lab_ns "$role")
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add eth0 netns "$ns" address "$mac" type veth peer name "$role" netns "$(lab_ns sw)"
  ip -n "$(lab_ns sw)" link set "$role" master br0 up
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" addr add "$ip6/64" dev eth0 nodad
  ip -n "$ns" link set eth0 up
}

# The director's forwarding: one map of the real servers by hash.
lab_director_rules() {
  local n=0 entries="" rs
  for rs in $LAB_RS_NAMES; do
    entries+="${entries:+, }$n : $(lab_rs_mac "$rs")"
    n=$((n + 1))
  done
  lab_in director nft -f - <<NFT
table netdev director {
  chain ingress {
    type filter hook ingress device "eth0" priority 0; policy accept;
    ip daddr { $LAB_VIP, $LAB_PREFIX_VIP } tcp dport { 80, 8080 } ether saddr set $LAB_DIRECTOR_MAC ether daddr set jhash ip saddr . tcp sport mod $n map { $entries } fwd to "eth0"
    ip6 daddr $LAB_VIP6 tcp dport { 80, 8080 } ether saddr set $LAB_DIRECTOR_MAC ether daddr set jhash ip6 saddr . tcp sport mod $n map { $entries } fwd to "eth0"
  }
}
NFT
}

lab_up() {
  ip netns add "$(lab_ns sw)"
  ip -n "$(lab_ns sw)" link add br0 type bridge
  ip -n "$(lab_ns sw)" link set br0 up
  lab_host client "$LAB_CLIENT_IP" 2001:db8::100 02:00:00:00:00:64
  lab_in client ip route add "$LAB_PREFIX_VIP" via "$LAB_DIRECTOR_IP"
  lab_host director "$LAB_DIRECTOR_IP" 2001:db8::2 "$LAB_DIRECTOR_MAC"
  lab_in director ip addr add "$LAB_VIP/32" dev eth0
  lab_in director ip addr add "$LAB_VIP6/128" dev eth0 nodad
  local rs
  for rs in $LAB_RS_NAMES; do
    lab_host "$rs" "$(lab_rs_ip "$rs")" "$(lab_rs_ip6 "$rs")" "$(lab_rs_mac "$rs")"
    mkdir -p "$LAB_DIR/$rs"
  done
  lab_director_rules
  lab_wait_links
}

# Waits until every eth0 has carrier.
lab_wait_links() {
  local role
  for role in client director $LAB_RS_NAMES; do
    for _ in $(seq 100); do
      lab_in "$role" ip -br link show eth0 | grep -q ' UP ' && break
      sleep 0.05
    done
  done
}

# The classic hand-made setup operators start from: VIPs on lo, nothing else.
lab_vip_by_hand() {
  local rs
  for rs in ${1:-$LAB_RS_NAMES}; do
    lab_in "$rs" ip addr add "$LAB_VIP/32" dev lo
    lab_in "$rs" ip addr add "$LAB_VIP6/128" dev lo nodad
    lab_in "$rs" ip route add local "$LAB_PREFIX_VIP" dev lo table local
  done
}

# An HTTP server in each real server on every local address, port 80, and a
# second one on 18080 (what a port mapping tcp:8080->18080 reaches). Each
# answers "NAME ADDRESS", the address it was asked at.
lab_start_http() {
  local rs
  for rs in $LAB_RS_NAMES; do
    for port in 80 18080; do
      lab_in "$rs" python3 "$LAB_HERE/http_server.py" "$rs" "$port" >"$LAB_DIR/$rs/http-$port.log" 2>&1 &
    done
  done
  for rs in $LAB_RS_NAMES; do
    for _ in $(seq 100); do
      [ "$(lab_in "$rs" ss -ltnH | grep -c -E ':(80|18080) ')" -ge 2 ] && break
      sleep 0.05
    done
  done
}

# Starts arpguardd on every real server; waits for READY. The method is
# LAB_METHOD_rs1 (or _rs2...) if set, else $1 (default both); a real server
# with method redirect gets its VIPs as redirected ones. Each serves HTTP
# readiness on its real IP port 9480 and agent-check on 9777.
# LAB_EXTRA_POLICY_rs1 (or _rs2...), if set, is appended to that server's policy;
# LAB_AGENT_POLICY_rs1 (or _rs2...), if set, goes into its [agent] table.
lab_guard() {
  local default=${1:-both} rs extra agent method_var method
  for rs in $LAB_RS_NAMES; do
    extra=LAB_EXTRA_POLICY_$rs
    agent=LAB_AGENT_POLICY_$rs
    method_var=LAB_METHOD_$rs
    method=${!method_var:-$default}
    {
      cat <<TOML
[agent]
state_dir = "$LAB_DIR/$rs/state"
control_socket = "$LAB_DIR/$rs/arpguard.sock"
${!agent:-}
[arp]
method = "$method"
[[vip]]
address = "$LAB_VIP"
TOML
      if [ "$method" = redirect ]; then
        # The redirect method serves what is asked of the VIP on this host's own sockets.
        printf '%s\n' 'ports = ["tcp:80", "tcp:8080->18080"]'
      fi
      cat <<TOML
[[vip]]
address = "$LAB_VIP6"
[[vip]]
address = "$LAB_PREFIX_VIP"
[readiness]
listen = ["$(lab_rs_ip "$rs"):9480"]
agent_check_listen = ["$(lab_rs_ip "$rs"):9777"]
${!extra:-}
TOML
    } >"$LAB_DIR/$rs/policy.toml"
    lab_in "$rs" "$LAB_ARPGUARDD" --policy "$LAB_DIR/$rs/policy.toml" >"$LAB_DIR/$rs/arpguardd.log" 2>&1 &
  done
  for rs in $LAB_RS_NAMES; do
    for _ in $(seq 100); do
      grep -q 'ready:' "$LAB_DIR/$rs/arpguardd.log" && break
      sleep 0.05
    done
    grep -q 'ready:' "$LAB_DIR/$rs/arpguardd.log" || { cat "$LAB_DIR/$rs/arpguardd.log" >&2; return 1; }
  done
}

# Prints the MACs that answered `arping IP` (default the VIP) from the client, sorted and unique.
lab_arp_macs() {
  lab_in client ip neigh flush dev eth0
  lab_in client arping -c 3 -W 0.1 -w 1 -i eth0 "${1:-$LAB_VIP}" | sed -n 's/.* bytes from \([0-9a-f:]*\) .*/\1/p' | sort -u
}

# Prints the MACs that answered a neighbour solicitation for IP6 (default the IPv6 VIP), sorted and unique.
lab_ndp_macs() {
  lab_in client ip -6 neigh flush dev eth0
  lab_in client ndisc6 -m -n -r 3 -w 300 "${1:-$LAB_VIP6}" eth0 2>/dev/null |
    sed -n 's/^Target link-layer address: *\([0-9A-Fa-f:]*\).*/\1/p' | tr 'A-F' 'a-f' | sort -u
}

# Prints, for N requests from distinct source ports to URL's host, "NAME ADDRESS" of the real server that answered.
# Each call uses fresh client ports (a port of an earlier call may still be in TIME_WAIT).
# lab_http [N] [URL_HOST] [PORT]
lab_http() {
  local n=${1:-20} host=${2:-$LAB_VIP} port=${3:-80} p first
  # Kept in a file: callers run this in $(...) subshells.
  first=$(cat "$LAB_DIR/http_port" 2>/dev/null || echo 41000)
  echo $((first + n)) >"$LAB_DIR/http_port"
  for p in $(seq $((first + 1)) $((first + n))); do
    lab_in client curl -s --max-time 2 --local-port "$p" "http://$host:$port/" || echo "no answer (port $p)"
  done
}

# Name of a MAC in the lab.
lab_mac_name() {
  local rs
  [ "$1" = "$LAB_DIRECTOR_MAC" ] && { echo director; return; }
  for rs in rs1 rs2 rs3; do [ "$1" = "$(lab_rs_mac "$rs")" ] && { echo "$rs"; return; }; done
  echo unknown
}

# The control socket of a real server's arpguardd.
lab_socket() { echo "$LAB_DIR/$1/arpguard.sock"; }

# Starts HAProxy in the director namespace from tests/lab/haproxy.cfg.in.
lab_haproxy() {
  sed "s|@STATS@|$LAB_DIR/haproxy.sock|" "$LAB_HERE/haproxy.cfg.in" >"$LAB_DIR/haproxy.cfg"
  lab_in director haproxy -db -f "$LAB_DIR/haproxy.cfg" >"$LAB_DIR/haproxy.log" 2>&1 &
  for _ in $(seq 100); do [ -S "$LAB_DIR/haproxy.sock" ] && return 0; sleep 0.05; done
  cat "$LAB_DIR/haproxy.log" >&2
  return 1
}

# HAProxy's view of real server NAME (UP, DOWN, DRAIN, ...), read from its stats socket.
lab_haproxy_state() {
  python3 - "$LAB_DIR/haproxy.sock" "$1" <<'PY'
import csv, io, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
for row in csv.DictReader(io.StringIO(data.decode().lstrip("# "))):
    if row["pxname"] == "real_servers" and row["svname"] == sys.argv[2]:
        print(row["status"])
PY
}

lab_down() {
  local role ns pid
  for role in client director rs1 rs2 rs3 sw; do
    ns=$(lab_ns "$role")
    # Under `set -e` a process that exited meanwhile, or a role the lab never made, must not end the cleanup.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$LAB_DIR"
}
