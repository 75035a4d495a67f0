#!/usr/bin/env bash
# Builds certbound_<version>_<arch>.deb with dpkg-deb from a release binary:
#   packaging/deb/build.sh BINARY OUT_DIR
# The package: /usr/bin/certbound, the hardened unit /lib/systemd/system/certbound.service, the
# configuration /etc/certbound/certbound.toml (a conffile), maintainer scripts that make the
# `certbound` system user.
set -euo pipefail
cd "$(dirname "$0")/../.."
BINARY=$1
OUT=$2
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ARCH=$(dpkg --print-architecture)
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
install -D -m 0755 "$BINARY" "$STAGE/usr/bin/certbound"
strip --strip-debug "$STAGE/usr/bin/certbound" 2>/dev/null || true
install -D -m 0644 packaging/certbound.service "$STAGE/lib/systemd/system/certbound.service"
install -D -m 0640 packaging/certbound.toml "$STAGE/etc/certbound/certbound.toml"
install -D -m 0644 LICENSE "$STAGE/usr/share/doc/certbound/copyright" 2>/dev/null \
  || printf 'certbound, Apache-2.0\n' | install -D -m 0644 /dev/stdin "$STAGE/usr/share/doc/certbound/copyright"
install -d -m 0755 "$STAGE/DEBIAN"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/deb/$script" "$STAGE/DEBIAN/$script"
done
echo /etc/certbound/certbound.toml > "$STAGE/DEBIAN/conffiles"
SIZE=$(du -sk "$STAGE/usr" "$STAGE/lib" "$STAGE/etc" | awk '{s += $1} END {print s}')
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: certbound
Version: $VERSION
Architecture: $ARCH
Maintainer: certbound developers <maintainers@certbound.invalid>
Installed-Size: $SIZE
Depends: adduser, libc6
Section: net
Priority: optional
Homepage: https://github.com/certbound/certbound
Description: FAPI trust stack for card-issuing APIs
 A directory and CA (software statements, transport and signing certificates),
 an OAuth 2 authorization server with mutual-TLS certificate-bound tokens and
 private_key_jwt, and a Cards API, in one binary.
CONTROL
mkdir -p "$OUT"
dpkg-deb --root-owner-group --build "$STAGE" "$OUT/certbound_${VERSION}_${ARCH}.deb" >/dev/null
echo "$OUT/certbound_${VERSION}_${ARCH}.deb"
