# The LVS-DR lab: a whole Direct Routing segment in network namespaces.
# Sourced by tests/lab/demo and tests/lab/lab_test; needs root.
#
#   client 192.0.2.100 --+
#   director 192.0.2.2 --+-- br0 (namespace "sw")
#   rs1 192.0.2.11 ------+
#   rs2 192.0.2.12 ------+
#
# The VIP 192.0.2.80 lives on the director's eth0. The kernel here has no
# IPVS, so the director is an nftables netdev ingress chain on its eth0: TCP to
# VIP:80 gets the director's source MAC and a real server's destination MAC
# (jhash of client address and port) and is sent back out; nothing else is
# touched. Each real server runs an HTTP server bound to VIP:80 that answers
# with its own name. Namespaces are named lab-$$-ROLE so labs can run side by
# side; lab_down removes everything, and callers trap it on EXIT.

LAB_VIP=192.0.2.80
LAB_CLIENT_IP=192.0.2.100
LAB_DIRECTOR_IP=192.0.2.2
LAB_DIRECTOR_MAC=02:00:00:00:00:02
LAB_RS_NAMES="rs1 rs2"
LAB_PREFIX="lab-$$"
LAB_DIR=$(mktemp -d /tmp/arpguard-lab.XXXXXX)
LAB_ARPGUARD=${ARPGUARD_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/agent/arpguard}
LAB_ARPGUARDD=${ARPGUARDD_BIN:-$(dirname "$LAB_ARPGUARD")/arpguardd}

lab_ns() { echo "$LAB_PREFIX-$1"; }
lab_in() { local ns; ns=$(lab_ns "$1"); shift; ip netns exec "$ns" "$@"; }
lab_rs_ip() { case $1 in rs1) echo 192.0.2.11 ;; rs2) echo 192.0.2.12 ;; esac; }
lab_rs_mac() { case $1 in rs1) echo 02:00:00:00:00:11 ;; rs2) echo 02:00:00:00:00:12 ;; esac; }

# lab_host ROLE IP MAC: a namespace whose eth0 is a port of the switch's br0.
lab_host() {
  local role=$1 ip=$2 mac=$3 ns
  ns=$(lab_ns "$role")
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add eth0 netns "$ns" address "$mac" type veth peer name "$role" netns "$(lab_ns sw)"
  ip -n "$(lab_ns sw)" link set "$role" master br0 up
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
}

lab_up() {
  ip netns add "$(lab_ns sw)"
  ip -n "$(lab_ns sw)" link add br0 type bridge
  ip -n "$(lab_ns sw)" link set br0 up
  lab_host client "$LAB_CLIENT_IP" 02:00:00:00:00:64
  lab_host director "$LAB_DIRECTOR_IP" "$LAB_DIRECTOR_MAC"
  lab_in director ip addr add "$LAB_VIP/32" dev eth0
  lab_in director nft -f - <<NFT
table netdev director {
  chain ingress {
    type filter hook ingress device "eth0" priority 0; policy accept;
    ip daddr $LAB_VIP tcp dport 80 ether saddr set $LAB_DIRECTOR_MAC ether daddr set jhash ip saddr . tcp sport mod 2 map { 0 : $(lab_rs_mac rs1), 1 : $(lab_rs_mac rs2) } fwd to "eth0"
  }
}
NFT
  local rs
  for rs in $LAB_RS_NAMES; do
    lab_host "$rs" "$(lab_rs_ip "$rs")" "$(lab_rs_mac "$rs")"
    mkdir -p "$LAB_DIR/$rs/www"
    echo "$rs" > "$LAB_DIR/$rs/www/index.html"
  done
  lab_wait_links
}

# Waits until every eth0 has carrier.
lab_wait_links() {
  local role tries
  for role in client director $LAB_RS_NAMES; do
    for tries in $(seq 100); do
      lab_in "$role" ip -br link show eth0 | grep -q ' UP ' && break
      sleep 0.05
    done
  done
}

# The classic hand-made setup operators start from: VIP on lo, nothing else.
lab_vip_by_hand() {
  local rs
  for rs in $LAB_RS_NAMES; do lab_in "$rs" ip addr add "$LAB_VIP/32" dev lo; done
}

# An HTTP server on VIP:80 in each real server (needs the VIP present).
lab_start_http() {
  local rs
  for rs in $LAB_RS_NAMES; do
    lab_in "$rs" python3 -m http.server 80 --bind "$LAB_VIP" --directory "$LAB_DIR/$rs/www" \
      >"$LAB_DIR/$rs/http.log" 2>&1 &
  done
  for rs in $LAB_RS_NAMES; do
    local tries
    for tries in $(seq 100); do
      lab_in "$rs" ss -ltn "sport = :80" | grep -q LISTEN && break
      sleep 0.05
    done
  done
}

# Starts arpguardd on every real server with method METHOD; waits for READY.
# Each serves HTTP readiness on its real IP port 9480 and agent-check on 9777.
# LAB_EXTRA_POLICY_rs1 (or _rs2), if set, is appended to that server's policy.
lab_guard() {
  local method=${1:-both} rs extra
  for rs in $LAB_RS_NAMES; do
    extra=LAB_EXTRA_POLICY_$rs
    cat >"$LAB_DIR/$rs/policy.toml" <<TOML
[agent]
state_dir = "$LAB_DIR/$rs/state"
control_socket = "$LAB_DIR/$rs/arpguard.sock"
[arp]
method = "$method"
[[vip]]
address = "$LAB_VIP"
[readiness]
listen = ["$(lab_rs_ip "$rs"):9480"]
agent_check_listen = ["$(lab_rs_ip "$rs"):9777"]
${!extra:-}
TOML
    lab_in "$rs" "$LAB_ARPGUARDD" --policy "$LAB_DIR/$rs/policy.toml" >"$LAB_DIR/$rs/arpguardd.log" 2>&1 &
  done
  for rs in $LAB_RS_NAMES; do
    local tries
    for tries in $(seq 100); do
      grep -q 'ready:' "$LAB_DIR/$rs/arpguardd.log" && break
      sleep 0.05
    done
    grep -q 'ready:' "$LAB_DIR/$rs/arpguardd.log" || { cat "$LAB_DIR/$rs/arpguardd.log" >&2; return 1; }
  done
}

# Prints the MACs that answered `arping VIP` from the client, one per line, sorted and unique.
lab_arp_macs() {
  lab_in client ip neigh flush dev eth0
  lab_in client arping -c 3 -W 0.1 -w 1 -i eth0 "$LAB_VIP" | sed -n 's/.* bytes from \([0-9a-f:]*\) .*/\1/p' | sort -u
}

# Prints, for N requests from distinct source ports, the name of the real server that answered.
lab_http() {
  local n=${1:-20} port
  for port in $(seq 41001 $((41000 + n))); do
    lab_in client curl -s --max-time 2 --local-port "$port" "http://$LAB_VIP/" || echo "no answer (port $port)"
  done
}

# Name of a MAC in the lab.
lab_mac_name() {
  case $1 in
    "$LAB_DIRECTOR_MAC") echo director ;;
    "$(lab_rs_mac rs1)") echo rs1 ;;
    "$(lab_rs_mac rs2)") echo rs2 ;;
    *) echo unknown ;;
  esac
}

# The control socket of a real server's arpguardd.
lab_socket() { echo "$LAB_DIR/$1/arpguard.sock"; }

# Starts HAProxy in the director namespace from tests/lab/haproxy.cfg.in.
lab_haproxy() {
  sed "s|@STATS@|$LAB_DIR/haproxy.sock|" "$(dirname "${BASH_SOURCE[0]}")/haproxy.cfg.in" >"$LAB_DIR/haproxy.cfg"
  lab_in director haproxy -db -f "$LAB_DIR/haproxy.cfg" >"$LAB_DIR/haproxy.log" 2>&1 &
  local tries
  for tries in $(seq 100); do [ -S "$LAB_DIR/haproxy.sock" ] && return 0; sleep 0.05; done
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
  for role in client director $LAB_RS_NAMES sw; do
    ns=$(lab_ns "$role")
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$LAB_DIR"
}
