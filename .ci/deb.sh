#!/usr/bin/env bash
# The Debian package (issue 14 item 3): built with dpkg-deb from a release binary, its unit
# checked by systemd-analyze (verify, and the security exposure it reports), installed with
# dpkg -i, the unit's ExecStart run as the unit's user until /readyz answers, then purged.
#   .ci/deb.sh [RELEASE_BINARY]   (default: the quick start's release build, else target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-${QUICKSTART_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/certbound-ci/quickstart-target}/release/certbound}
[ -x "$BIN" ] || BIN=target/release/certbound
[ -x "$BIN" ] || { echo "no release binary: cargo build --release first"; exit 1; }
WORK=$(mktemp -d)
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  dpkg --purge certbound >/dev/null 2>&1 || true
  rm -rf "$WORK" /var/lib/certbound
}
trap cleanup EXIT
dpkg -s certbound >/dev/null 2>&1 && { echo "a certbound package is installed already: remove it first"; exit 1; }
[ -e /var/lib/certbound ] && { echo "/var/lib/certbound exists: move it away first"; exit 1; }

DEB=$(packaging/deb/build.sh "$BIN" "$WORK")
echo "built $(basename "$DEB") ($(du -h "$DEB" | cut -f1))"
dpkg-deb --info "$DEB" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\):/   \1:/p'
dpkg -i "$DEB" >/dev/null
for path in /usr/bin/certbound /lib/systemd/system/certbound.service /etc/certbound/certbound.toml; do
  [ -e "$path" ] || { echo "missing after install: $path"; exit 1; }
done
getent passwd certbound >/dev/null || { echo "no certbound user after install"; exit 1; }
[ "$(stat -c '%a %U:%G' /etc/certbound/certbound.toml)" = "640 root:certbound" ] || { stat /etc/certbound/certbound.toml; exit 1; }
certbound config check /etc/certbound/certbound.toml

systemd-analyze verify /lib/systemd/system/certbound.service
echo "systemd-analyze verify: ok"
systemd-analyze security --offline=true /lib/systemd/system/certbound.service 2>/dev/null | tail -1 || true

# The unit's ExecStart, as the unit's user, with the state directory systemd would make.
EXEC=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/certbound.service)
UNIT_USER=$(sed -n 's/^User=//p' /lib/systemd/system/certbound.service)
install -d -m 0700 -o "$UNIT_USER" -g "$UNIT_USER" /var/lib/certbound
# shellcheck disable=SC2086
(cd / && exec setpriv --reuid="$UNIT_USER" --regid="$UNIT_USER" --init-groups -- $EXEC) > "$WORK/up.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
  [ "$(curl -s http://127.0.0.1:9464/readyz)" = ready ] && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/up.log"; echo "ExecStart exited"; exit 1; }
  sleep 0.2
done
[ "$(curl -s http://127.0.0.1:9464/readyz)" = ready ] || { cat "$WORK/up.log"; echo "/readyz never ready"; exit 1; }
echo "ExecStart as $UNIT_USER: /readyz ready"
[ "$(stat -c '%U %a' /var/lib/certbound/master.key)" = "$UNIT_USER 600" ] || { ls -la /var/lib/certbound; exit 1; }
kill -TERM "$PID"; wait "$PID"; PID=""
echo "SIGTERM: drained, exit 0"

dpkg --purge certbound >/dev/null
for path in /usr/bin/certbound /lib/systemd/system/certbound.service /etc/certbound; do
  [ ! -e "$path" ] || { echo "left after purge: $path"; exit 1; }
done
! getent passwd certbound >/dev/null || { echo "the certbound user is left after purge"; exit 1; }
echo "purged cleanly (the data in /var/lib/certbound is kept by design; removed here)"
