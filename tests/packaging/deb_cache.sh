# shellcheck shell=bash
# The .deb of a tracked tree, built once and shared: tests/packaging's
# package_test and systemd_test both need it, and each build is a whole
# optimised compile. Sourced; needs git, dpkg-dev, flock.
#
#   deb_key DIR                 key of DIR's tracked files and the build dependencies' versions
#   deb_cached CACHE DIR LOG    a directory holding the build's artefacts (.deb, .changes, .dsc,
#                               .buildinfo, sources), from CACHE or built now; the build's
#                               output goes to LOG. Concurrent callers wait for one build.

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

deb_cached() {
  local cache=$1 dir=$2 log=$3 key out
  key=$(deb_key "$dir") || return 1
  out="$cache/deb-$key"
  mkdir -p "$cache"
  (
    flock 9
    if [ -f "$out.failed" ]; then
      echo "# this tree failed to build before: $out.failed (delete it to try again)" >&2
      exit 1
    fi
    if ls "$out"/arpguard_*.deb >/dev/null 2>&1; then
      echo "# package from the cache: $out (same tracked tree and build dependencies)" >&2
      exit 0
    fi
    local status=0 started=$SECONDS pattern
    rm -rf "$out.tmp"
    timeout 1800 "$dir/packaging/build-deb" "$out.tmp" >"$log" 2>&1 || status=$?
    if [ "$status" != 0 ]; then
      tail -8 "$log" | sed 's/^/#   /' >&2
      # A build that failed (not one timed out or interrupted) is remembered.
      { [ "$status" = 1 ] || [ "$status" = 2 ]; } && cp "$log" "$out.failed"
      rm -rf "$out.tmp"
      exit 1
    fi
    rm -rf "$out" && mv "$out.tmp" "$out" || exit 1
    # The cache keeps the three newest packages and failures.
    for pattern in 'deb-*[0-9a-f]' 'deb-*.failed'; do
      find "$cache" -maxdepth 1 -name "$pattern" -printf '%T@ %p\n' | sort -rn | tail -n +4 | cut -d' ' -f2- | xargs -r rm -rf
    done
    echo "# built $(basename "$out"/arpguard_*.deb) ($((SECONDS - started)) s)" >&2
  ) 9>"$cache/.deb.lock" || return 1
  printf '%s\n' "$out"
}
