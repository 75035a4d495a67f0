#!/usr/bin/env bash
# The Cards API's webhooks verified by another implementation of RFC 9421 (issue 18): a Python
# receiver using the `http-message-signatures` package (PyPI) checks every delivery's signature,
# with the key from GET /keys, and its Content-Digest. certbound up trusts the receiver's
# openssl-made CA through [webhooks] ca_file; a client onboarded with --webhook loads a card,
# buys on it through the sandbox's network and clears the purchase: three signed events.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${CERTBOUND_BIN:-target/debug/certbound}")
VENV="$HOME/.cache/certbound-ci/venv-webhooks"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import http_message_signatures, cryptography" 2>/dev/null \
  || "$VENV/bin/pip" install -q "http-message-signatures>=3,<4" "cryptography>=42"
WORK=$(mktemp -d); echo "work: $WORK"
cleanup() {
  if [ -n "${UP:-}" ]; then kill "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; fi
  if [ -n "${RECEIVER:-}" ]; then kill "$RECEIVER" 2>/dev/null || true; wait "$RECEIVER" 2>/dev/null || true; fi
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# The receiver's own CA and server certificate, by openssl.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=receiver test CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$WORK/receiver.key" -out "$WORK/receiver.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' > "$WORK/ext"
openssl x509 -req -in "$WORK/receiver.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial -days 1 \
  -extfile "$WORK/ext" -out "$WORK/receiver.pem" 2>/dev/null

printf '[webhooks]\nca_file = "%s"\n' "$WORK/ca.pem" > "$WORK/certbound.toml"
"$BIN" up --config "$WORK/certbound.toml" --data-dir "$WORK/data" --no-ops --listen-directory 127.0.0.1:27541 \
  --listen-directory-mtls 127.0.0.1:27542 --listen-authz 127.0.0.1:27543 --listen-cards 127.0.0.1:27544 > "$WORK/up.log" 2>&1 &
UP=$!
for _ in $(seq 1 100); do grep -q "Stop with Ctrl-C" "$WORK/up.log" && break; sleep 0.2; done
grep -q "Stop with Ctrl-C" "$WORK/up.log" || { cat "$WORK/up.log"; exit 1; }
"$BIN" onboard --directory https://localhost:27541 --authz https://localhost:27543 --cards https://localhost:27544/api/v1 \
  --ca "$WORK/data/ca.pem" --admin-token-file "$WORK/data/admin.token" --out "$WORK/client" \
  --webhook https://localhost:27545/events > "$WORK/onboard.log"
P=(--profile "$WORK/client")
"$BIN" call "${P[@]}" GET /keys > "$WORK/jwks.json" 2>/dev/null

"$VENV/bin/python" .ci/webhooks_receiver.py 27545 "$WORK/receiver.pem" "$WORK/receiver.key" "$WORK/jwks.json" 3 \
  "$WORK/verified.jsonl" > "$WORK/receiver.log" 2>&1 &
RECEIVER=$!
for _ in $(seq 1 50); do grep -q "^ready" "$WORK/receiver.log" && break; sleep 0.2; done

CARD=$("$BIN" cards "${P[@]}" create 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["publicToken"])')
"$BIN" cards "${P[@]}" load "$CARD" --amount 100.00 > /dev/null 2>&1
AUTH=$("$BIN" sandbox "${P[@]}" authorise "$CARD" --amount 20 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["authorisationId"])')
"$BIN" sandbox "${P[@]}" clear "$CARD" "$AUTH" > /dev/null 2>&1
status=0; wait "$RECEIVER" || status=$?; RECEIVER=""
cat "$WORK/receiver.log"
[ "$status" -eq 0 ] || exit 1
[ "$(wc -l < "$WORK/verified.jsonl")" -eq 3 ] || { echo "expected three verified deliveries"; exit 1; }
echo "three deliveries verified by http-message-signatures (an RFC 9421 implementation that is not certbound's)"
