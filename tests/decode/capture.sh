#!/bin/sh
# Captures the fixtures of the decode suite again from the running kernel:
#   tests/decode/capture.sh BUILD_DIR
# Needs root. Each script runs in its own fresh network namespace; the
# output replaces captured/<script>.hex. The tests assert exact values from
# these files: after capturing again, review the diff and the tests.
set -eu
build=${1:?usage: capture.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
capture=$build/tests/decode/capture
ARPGUARD=${ARPGUARD_BIN:-$build/agent/arpguard}
SCRATCH=$(mktemp -d /tmp/agt-capture-XXXXXX)
ns=agt-$$-capture
cleanup() {
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$SCRATCH"
}
trap cleanup EXIT INT TERM
sed "s|@SCRATCH@|$SCRATCH|g" "$here/captured/policy.toml" > "$SCRATCH/policy.toml"
POLICY=$SCRATCH/policy.toml
export ARPGUARD POLICY SCRATCH
for script in rtnl nft; do
  ip netns del "$ns" 2>/dev/null || true
  ip netns add "$ns"
  {
    echo "# Captured by tests/decode/capture.sh from captured/$script.script on Linux $(uname -r),"
    echo "# $(nft --version), $(ip -V). One message per line: LABEL.N HEX, after a"
    echo "# comment naming the command that caused it and the message type."
    ip netns exec "$ns" "$capture" "$here/captured/$script.script"
  } > "$SCRATCH/$script.hex"
  mv "$SCRATCH/$script.hex" "$here/captured/$script.hex"
  ip netns del "$ns"
done
