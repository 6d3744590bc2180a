# shellcheck shell=bash
# The .deb and the RPM of a tracked tree, each built once and shared: each
# build is a whole optimised compile, package_test and systemd_test both need
# the .deb, and tests/run-all builds both in the background (at the lowest
# priority) while the suites that mostly wait run. Sourced; needs git,
# dpkg-dev, rpm, flock.
#
#   deb_key DIR                 key of DIR's tracked files and the build dependencies' versions
#   deb_cached CACHE DIR LOG    a directory holding the build's artefacts (.deb, .changes, .dsc,
#                               .buildinfo, sources), from CACHE or built now; the build's
#                               output goes to LOG. Concurrent callers wait for one build.
#   rpm_cached CACHE DIR LOG    the same for packaging/build-rpm (the .rpm files)

deb_key() {
  local dir=$1 bdeps
  bdeps=$(awk '/^Build-Depends:/ { on = 1; sub(/^Build-Depends:/, "") } on && /^[^ \t]/ && !/^Build-Depends/ { on = 0 }
               on { print }' "$dir/packaging/debian/control" | tr ',' '\n' | sed 's/[( [].*//; s/^[[:space:]]*//' | grep -v '^$')
  {
    git -C "$dir" ls-files -z | (cd "$dir" && xargs -0 sha256sum)
    # shellcheck disable=SC2086 # a list of package names
    dpkg-query -W -f='${Package} ${Version}\n' $bdeps debhelper dpkg-dev g++ 2>&1
  } | sha256sum | cut -c1-16
}

deb_cached() { package_cached deb "$@"; }
rpm_cached() { package_cached rpm "$@"; }

# package_cached KIND CACHE DIR LOG: KIND deb or rpm, built by packaging/build-KIND.
package_cached() {
  local kind=$1 cache=$2 dir=$3 log=$4 key out
  key=$(deb_key "$dir") || return 1
  out="$cache/$kind-$key"
  mkdir -p "$cache"
  (
    flock 9
    if [ -f "$out.failed" ]; then
      echo "# this tree failed to build before: $out.failed (delete it to try again)" >&2
      exit 1
    fi
    if [ -d "$out" ]; then
      echo "# $kind from the cache: $out (same tracked tree and build dependencies)" >&2
      exit 0
    fi
    local status=0 started=$SECONDS pattern
    rm -rf "$out.tmp"
    timeout 1800 "$dir/packaging/build-$kind" "$out.tmp" >"$log" 2>&1 || status=$?
    if [ "$status" != 0 ]; then
      tail -8 "$log" | sed 's/^/#   /' >&2
      # A build that failed (not one timed out or interrupted) is remembered.
      { [ "$status" = 1 ] || [ "$status" = 2 ]; } && cp "$log" "$out.failed"
      rm -rf "$out.tmp"
      exit 1
    fi
    rm -rf "$out" && mv "$out.tmp" "$out" || exit 1
    # The cache keeps the three newest packages of each kind, and failures.
    for pattern in "$kind-*[0-9a-f]" "$kind-*.failed"; do
      find "$cache" -maxdepth 1 -name "$pattern" -printf '%T@ %p\n' | sort -rn | tail -n +4 | cut -d' ' -f2- | xargs -r rm -rf
    done
    echo "# built the $kind in $out ($((SECONDS - started)) s)" >&2
  ) 9>"$cache/.$kind.lock" || return 1
  printf '%s\n' "$out"
}
