#!/usr/bin/env bash
# The directory console in a real browser (issue 15): Debian's Chromium and ChromeDriver, driven
# through WebDriver by Selenium (browser-tests/console_journey.py), against a live `certbound up`,
# with axe-core (npm, pinned in browser-tests/package-lock.json) on every page. Chromium trusts
# certbound's root through its own NSS database, as a person's browser would after importing
# ca.pem. Screenshots of every page land in target/console-screenshots/ (CI keeps them).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${CERTBOUND_BIN:-target/debug/certbound}")
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! command -v certutil >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver libnss3-tools >/dev/null
fi
VENV="$HOME/.cache/certbound-ci/venv-browser"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import selenium" 2>/dev/null || "$VENV/bin/pip" install -q "selenium>=4.20,<5"
[ -d browser-tests/node_modules/axe-core ] || (cd browser-tests && npm ci --no-audit --no-fund --loglevel=error)
WORK=$(mktemp -d); echo "work: $WORK"
cleanup() {
  # Only what this script started.
  if [ -n "${UP:-}" ]; then kill "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; fi
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" up --data-dir "$WORK/data" --no-ops --listen-directory 127.0.0.1:29441 --listen-directory-mtls 127.0.0.1:29442 \
  --listen-authz 127.0.0.1:29443 --listen-cards 127.0.0.1:29444 > "$WORK/up.log" 2>&1 &
UP=$!
for _ in $(seq 1 100); do grep -q "Stop with Ctrl-C" "$WORK/up.log" && break; sleep 0.2; done
grep -q "Stop with Ctrl-C" "$WORK/up.log" || { cat "$WORK/up.log"; exit 1; }

mkdir -p "$WORK/home/.pki/nssdb"
certutil -d "sql:$WORK/home/.pki/nssdb" -N --empty-password
certutil -d "sql:$WORK/home/.pki/nssdb" -A -t "C,," -n "certbound root" -i "$WORK/data/ca.pem"

SHOTS=target/console-screenshots
rm -rf "$SHOTS"
HOME="$WORK/home" "$VENV/bin/python" browser-tests/console_journey.py https://localhost:29441 "$WORK/data" "$BIN" \
  "$WORK" "$SHOTS" https://localhost:29443 https://localhost:29444/api/v1
