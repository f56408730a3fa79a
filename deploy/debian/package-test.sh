#!/bin/sh
# Builds the Debian package from BUILD_DIR with CPack, installs it with dpkg -i, checks what it
# laid out and runs the installed binary, then purges it and checks that nothing is left.
# Needs root and a machine where vodgrid is not installed otherwise; skipped (exit 77) without.
# usage: package-test.sh BUILD_DIR
set -eu
build=$1
if [ "$(id -u)" != 0 ]; then
  echo "skipped: dpkg -i needs root"
  exit 77
fi
if dpkg -s vodgrid > /dev/null 2>&1; then
  echo "skipped: a vodgrid package is installed on this machine; not touching it"
  exit 77
fi
work=$(mktemp -d)
cleanup() {
  dpkg --purge vodgrid > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "package-test: $*" >&2
  exit 1
}
(cd "$build" && cpack -G DEB -B "$work" > "$work/cpack.log" 2>&1) || {
  cat "$work/cpack.log" >&2
  fail "cpack failed"
}
deb=$(ls "$work"/vodgrid_*.deb)
dpkg-deb --info "$deb" | grep -q "Depends:.*systemd" || fail "the package does not depend on systemd"
dpkg -i "$deb" > "$work/dpkg.log" 2>&1 || {
  cat "$work/dpkg.log" >&2
  fail "dpkg -i failed"
}
for f in /usr/bin/vodgrid /usr/lib/systemd/system/vodgrid-registry.service \
         /usr/lib/systemd/system/vodgrid-station@.service /usr/lib/sysusers.d/vodgrid.conf \
         /usr/share/doc/vodgrid/install.md /usr/share/vodgrid/web/watch.html \
         /usr/share/vodgrid/web/node_modules/hls.js/dist/hls.min.js; do
  [ -e "$f" ] || fail "$f is not installed"
done
id vodgrid > /dev/null || fail "the vodgrid account was not made"
[ "$(stat -c %U /var/lib/vodgrid)" = vodgrid ] || fail "/var/lib/vodgrid is not vodgrid's"
/usr/bin/vodgrid --help > /dev/null || fail "the installed vodgrid does not run"
if file /usr/bin/vodgrid | grep -q "not stripped"; then
  fail "the installed binary is not stripped"
fi
dpkg --purge vodgrid > "$work/purge.log" 2>&1 || {
  cat "$work/purge.log" >&2
  fail "dpkg --purge failed"
}
for f in /usr/bin/vodgrid /usr/lib/systemd/system/vodgrid-registry.service /etc/vodgrid \
         /var/lib/vodgrid; do
  [ ! -e "$f" ] || fail "$f is left after purge"
done
! id vodgrid > /dev/null 2>&1 || fail "the vodgrid account is left after purge"
echo "package installed, ran and purged cleanly: $(basename "$deb")"
