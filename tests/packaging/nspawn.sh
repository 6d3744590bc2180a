# shellcheck shell=bash
# Functions for running a Debian tree under a real systemd with systemd-nspawn,
# on a host whose PID 1 is not systemd (no machined, no system bus): the
# container is started with --register=no --keep-unit and entered with nsenter.
# Sourced by tests/packaging/systemd_test; needs root, debootstrap and
# systemd-container (systemd-nspawn).
#
#   nspawn_mirror                         the Debian mirror of this host's apt sources
#   nspawn_deb_depends DEB                package names of a .deb's Depends (first alternatives)
#   nspawn_image CACHE SUITE PKG...       a cached minbase tarball with PKG... included
#   nspawn_unpack TARBALL DIR             a tree from a cached tarball
#   nspawn_setup DIR MACHINE CMD...       runs CMD in the tree, not booted
#   nspawn_boot DIR MACHINE NETNS LOG ... boots the tree; sets NSPAWN_PID and NSPAWN_LEADER
#   nspawn_exec CMD...                    runs CMD in the booted container (all its namespaces)
#   nspawn_wait_running SECONDS           systemctl is-system-running --wait, bounded
#   nspawn_stop                           powers the container off (bounded), then kills what is left

NSPAWN_PID='' NSPAWN_LEADER='' NSPAWN_MACHINE=''

# The mirror this host's apt uses for the main archive of Debian 12, read at run
# time (deb822 sources first, then the one-line format); empty if none is
# found, and debootstrap then uses its default.
nspawn_mirror() {
  local f=/etc/apt/sources.list.d/debian.sources uri=''
  if [ -r "$f" ]; then
    uri=$(awk 'BEGIN { RS = "" } /(^|\n)Types:[^\n]*deb([ \t]|\n|$)/ && /(^|\n)Suites:[^\n]*[ \t]bookworm([ \t]|\n|$)/ {
                 if (match($0, /(^|\n)URIs:[ \t]*[^ \t\n]+/)) { s = substr($0, RSTART, RLENGTH); sub(/^\n?URIs:[ \t]*/, "", s); print s; exit } }' "$f")
  fi
  if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while (i <= NF && $i !~ /\]$/) i++; if ($2 ~ /^\[/) i++;
                             if ($(i + 1) == "bookworm") { print $i; exit } }' /etc/apt/sources.list)
  fi
  printf '%s\n' "$uri"
}

# Package names a .deb depends on: versions, architecture qualifiers and every
# alternative but the first dropped.
nspawn_deb_depends() {
  dpkg-deb -f "$1" Depends | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/:any//' -e 's/[[:space:]]//g' | grep -v '^$'
}

# Prints the path of a tarball of a debootstrap --variant=minbase tree of SUITE
# with PKG... included, from CACHE if it holds one for this list (keyed by the
# sorted list), else made now. debootstrap is bounded to 10 minutes. Progress
# goes to stderr.
nspawn_image() {
  local cache=$1 suite=$2; shift 2
  local include key tarball tmp mirror proxy status=0
  include=$(printf '%s\n' "$@" | sort -u | paste -sd, -)
  key=$(printf '%s %s minbase %s\n' "$suite" "$(dpkg --print-architecture)" "$include" | sha256sum | cut -c1-16)
  tarball="$cache/$suite-minbase-$key.tar.gz"
  mkdir -p "$cache"
  (
    flock 9  # concurrent runs wait for one debootstrap instead of racing
    [ -s "$tarball" ] && exit 0
    mirror=$(nspawn_mirror)
    if [ -z "${http_proxy:-}" ]; then
      proxy=$(apt-config shell P Acquire::http::Proxy | sed -n "s/^P='\(.*\)'$/\1/p")
      [ -n "$proxy" ] && export http_proxy=$proxy
    fi
    tmp=$(mktemp -d "$cache/.debootstrap.XXXXXX")
    echo "nspawn: debootstrap --variant=minbase $suite ${mirror:-(default mirror)} --include=$include" >&2
    timeout 600 debootstrap --variant=minbase --include="$include" "$suite" "$tmp/tree" ${mirror:+"$mirror"} \
      >"$tmp/debootstrap.log" 2>&1 || status=$?
    if [ "$status" != 0 ]; then
      if [ "$status" = 124 ]; then echo "nspawn: debootstrap took more than 10 minutes: gave up" >&2
      else echo "nspawn: debootstrap failed ($status):" >&2; tail -20 "$tmp/debootstrap.log" >&2; fi
      rm -rf --one-file-system "$tmp"
      exit 1
    fi
    rm -f "$tmp"/tree/var/cache/apt/archives/*.deb
    tar -C "$tmp/tree" --numeric-owner --xattrs --xattrs-include='*' --acls -czf "$tmp/image.tar.gz" . &&
      mv "$tmp/image.tar.gz" "$tarball"
    status=$?
    rm -rf --one-file-system "$tmp"
    exit "$status"
  ) 9>"$cache/.lock" || return 1
  printf '%s\n' "$tarball"
}

nspawn_unpack() {
  mkdir -p "$2" && tar -C "$2" --numeric-owner --xattrs --xattrs-include='*' --acls -xzf "$1"
}

# Runs CMD in tree DIR as a plain container (no init; /tmp is a fresh tmpfs).
nspawn_setup() {
  local dir=$1 machine=$2; shift 2
  timeout 300 systemd-nspawn -q -D "$dir" --machine="$machine" --register=no --keep-unit --pipe "$@"
}

# nspawn_boot DIR MACHINE NETNS LOG [NSPAWN-OPTION...]: boots DIR's systemd in
# network namespace NETNS (a name under /run/netns) with CAP_NET_ADMIN, the
# console passive and written to LOG. Sets NSPAWN_PID (systemd-nspawn) and
# NSPAWN_LEADER (the container's PID 1, as the host sees it).
nspawn_boot() {
  local dir=$1 machine=$2 netns=$3 log=$4; shift 4
  NSPAWN_MACHINE=$machine
  systemd-nspawn -b -q -D "$dir" --machine="$machine" --register=no --keep-unit \
    --network-namespace-path="/run/netns/$netns" --capability=CAP_NET_ADMIN --console=passive "$@" \
    </dev/null >"$log" 2>&1 &
  NSPAWN_PID=$!
  local _
  for _ in $(seq 200); do
    NSPAWN_LEADER=$(nspawn_find_leader "$NSPAWN_PID")
    [ -n "$NSPAWN_LEADER" ] && return 0
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "nspawn: no container init under systemd-nspawn ($NSPAWN_PID):" >&2
  tail -20 "$log" >&2
  return 1
}

# The child of systemd-nspawn PID whose comm is systemd.
nspawn_find_leader() {
  local d
  for d in /proc/[0-9]*; do
    [ "$(cat "$d/comm" 2>/dev/null)" = systemd ] || continue
    [ "$(awk '/^PPid:/ { print $2 }' "$d/status" 2>/dev/null)" = "$1" ] && { echo "${d#/proc/}"; return 0; }
  done
  return 0
}

# Runs CMD inside the booted container: its mount, PID, network, UTS, IPC and
# cgroup namespaces, with a clean environment; bounded to NSPAWN_TIMEOUT (60 s).
nspawn_exec() {
  timeout "${NSPAWN_TIMEOUT:-60}" nsenter -t "$NSPAWN_LEADER" -a \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 TERM=dumb "$@"
}

# Prints the state is-system-running ends in; 0 if running.
# Until the container's systemd has made its bus, systemctl cannot connect
# and says nothing at once ("Failed to connect to bus"): asked again then.
nspawn_wait_running() {
  local deadline=$((SECONDS + $1)) state status
  while :; do
    status=0
    state=$(NSPAWN_TIMEOUT=$((deadline - SECONDS + 1)) nspawn_exec systemctl is-system-running --wait 2>/dev/null) ||
      status=$?
    if [ -n "$state" ]; then echo "$state"; return "$status"; fi
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# systemd-nspawn turns SIGTERM into a clean poweroff of the container; after
# 30 s, or if that fails, the container's PID 1 (and with it its PID
# namespace) and systemd-nspawn are killed.
nspawn_stop() {
  [ -n "$NSPAWN_PID" ] || return 0
  local _
  if kill -TERM "$NSPAWN_PID" 2>/dev/null; then
    for _ in $(seq 300); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  if kill -0 "$NSPAWN_PID" 2>/dev/null; then
    echo "nspawn: the container did not power off within 30 s: killed" >&2
    [ -n "$NSPAWN_LEADER" ] && kill -KILL "$NSPAWN_LEADER" 2>/dev/null
    kill -KILL "$NSPAWN_PID" 2>/dev/null
  fi
  wait "$NSPAWN_PID" 2>/dev/null
  # What systemd-nspawn may leave on the host for this machine.
  [ -n "$NSPAWN_MACHINE" ] && rm -rf --one-file-system "/run/systemd/nspawn/propagate/$NSPAWN_MACHINE"
  NSPAWN_PID='' NSPAWN_LEADER=''
}
