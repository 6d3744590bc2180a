#!/bin/sh
# Captures the fixtures of the wire suite again from the running kernel:
#   tests/wire/capture.sh BUILD_DIR
# Needs root. A real server and a client, each in a fresh network namespace,
# share one veth segment; capture runs in the real server's, with the log
# rules of captured/rules.nft, and replaces captured/nflog.hex. The tests
# assert exact values from that file: after capturing again, review the diff
# and the tests.
set -eu
build=${1:?usage: capture.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
capture=$build/tests/wire/capture
RS=agt-$$-wire-rs
CL=agt-$$-wire-cl
SCRATCH=$(mktemp -d /tmp/agt-wire-XXXXXX)
cleanup() {
  ip netns del "$RS" 2>/dev/null || true
  ip netns del "$CL" 2>/dev/null || true
  rm -rf "$SCRATCH"
}
trap cleanup EXIT INT TERM
for ns in "$RS" "$CL"; do
  ip netns add "$ns"
  # No duplicate address detection by default: link-local addresses are usable at once.
  ip netns exec "$ns" sh -c 'ip link set lo up && sysctl -qw net.ipv6.conf.default.accept_dad=0'
done
ip link add eth0 netns "$RS" address 02:00:00:00:00:01 type veth peer name eth0 netns "$CL" address 02:00:00:00:00:02
ip netns exec "$RS" sh -c 'ip addr add 192.0.2.1/24 dev eth0 && ip addr add 2001:db8::1/64 dev eth0 && ip link set eth0 up'
ip netns exec "$CL" sh -c 'ip addr add 192.0.2.2/24 dev eth0 && ip addr add 2001:db8::2/64 dev eth0 && ip link set eth0 up'
sleep 1
ip netns exec "$RS" nft -f "$here/captured/rules.nft"
export CL
{
  echo "# Captured by tests/wire/capture.sh from captured/nflog.script on Linux $(uname -r),"
  echo "# $(nft --version), $(arping --help 2>&1 | head -1), $(ndisc6 -V 2>&1 | head -1)."
  echo "# Real server eth0 02:00:00:00:00:01 (192.0.2.1, 2001:db8::1, fe80::ff:fe00:1), client"
  echo "# eth0 02:00:00:00:00:02 (192.0.2.2, 2001:db8::2, fe80::ff:fe00:2). One message per"
  echo "# line: LABEL.N HEX, after a comment naming the command that caused it."
  ip netns exec "$RS" "$capture" 4247 "$here/captured/nflog.script"
} > "$SCRATCH/nflog.hex"
mv "$SCRATCH/nflog.hex" "$here/captured/nflog.hex"
