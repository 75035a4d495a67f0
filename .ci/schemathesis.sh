#!/usr/bin/env bash
# Runs schemathesis against the Cards API's OpenAPI document on a live `certbound up`, as a
# client onboarded by scripts/onboard-by-hand.sh: a bounded number of examples per operation,
# and no answer may be a 5xx.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CERTBOUND_BIN:-target/debug/certbound}
WORK=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
python3 -m schemathesis.cli --version >/dev/null 2>&1 || python3 -m pip install --quiet schemathesis
"$BIN" up --data-dir "$WORK/data" --listen-directory 127.0.0.1:18441 --listen-directory-mtls 127.0.0.1:18442 \
  --listen-authz 127.0.0.1:18443 --listen-cards 127.0.0.1:18444 --no-ops > "$WORK/up.log" 2>&1 &
PID=$!
for _ in $(seq 1 50); do grep -q "Stop with Ctrl-C" "$WORK/up.log" && break; sleep 0.2; done
grep -q "Stop with Ctrl-C" "$WORK/up.log" || { cat "$WORK/up.log"; exit 1; }
scripts/onboard-by-hand.sh "$WORK/data" "$WORK/client" https://localhost:18441 https://localhost:18443 '["programme-manager"]'
cd "$WORK/client"
python3 -m schemathesis.cli run https://localhost:18444/api/v1/openapi.json \
  --url https://localhost:18444/api/v1 \
  --checks not_a_server_error \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" --seed 1 --workers 1 \
  --tls-verify "$WORK/data/ca.pem" --request-cert transport.pem --request-cert-key transport.key \
  -H "Authorization: Bearer $(cat token)"
