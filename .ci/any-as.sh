#!/usr/bin/env bash
# The client against another FAPI authorization server (issue 16): node-oidc-provider 9 from
# bench/peers/oidc-provider, with one client whose keys and certificates certbound's own CA issued,
# and a profile written by hand (no directory, no cards, no kid), as a user of another AS would.
# `certbound discover` and `certbound token --scope` must work, the token must carry the scopes
# asked for and be bound (cnf.x5t#S256) to the transport certificate, with the assertion's `aud`
# the issuer and then the token endpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${CERTBOUND_BIN:-target/debug/certbound}")
PEER=bench/peers/oidc-provider
command -v node >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
[ -d "$PEER/node_modules/oidc-provider" ] || (cd "$PEER" && npm ci --no-audit --no-fund --loglevel=error)
WORK=$(mktemp -d); echo "work: $WORK"
cleanup() {
  # Only what this script started (a `kill 0` would take CI's whole process group with it).
  if [ -n "${UP:-}" ]; then kill "$UP" 2>/dev/null || true; fi
  if [ -n "${NODE:-}" ]; then kill "$NODE" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# certbound's CA issues the client's transport and signing certificates (onboarding).
"$BIN" up --data-dir "$WORK/data" --no-ops --listen-directory 127.0.0.1:28441 --listen-directory-mtls 127.0.0.1:28442 \
  --listen-authz 127.0.0.1:28443 --listen-cards 127.0.0.1:28444 > "$WORK/up.log" 2>&1 &
UP=$!
for _ in $(seq 1 50); do grep -q "Stop with Ctrl-C" "$WORK/up.log" && break; sleep 0.2; done
"$BIN" onboard --directory https://localhost:28441 --authz https://localhost:28443 --cards https://localhost:28444/api/v1 \
  --ca "$WORK/data/ca.pem" --admin-token-file "$WORK/data/admin.token" --out "$WORK/onboarded" > "$WORK/onboard.log"
kill "$UP"; wait "$UP" 2>/dev/null || true; UP=""

# node-oidc-provider on its own self-signed server certificate, trusting certbound's CA for clients.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE -addext keyUsage=critical,digitalSignature \
  -addext extendedKeyUsage=serverAuth -keyout "$WORK/node.key" -out "$WORK/node.pem" 2>/dev/null
python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
read = lambda name: open(f"{work}/{name}").read()
json.dump({
    "port": 28453, "issuer": "https://localhost:28453",
    "key": read("node.key"), "cert": read("node.pem"), "ca": read("data/ca.pem"),
    "scopes": ["cards.read", "cards.write", "pin.read", "pin.write"],
    "clients": [{"client_id": "peer-client",
                 "signing_certificate": read("onboarded/signing.pem"),
                 "transport_certificate": read("onboarded/transport.pem")}],
}, open(f"{work}/node.json", "w"))
PY
(cd "$PEER" && exec node server.mjs "$WORK/node.json") > "$WORK/node.log" 2>&1 &
NODE=$!
for _ in $(seq 1 50); do grep -q "^ready" "$WORK/node.log" && break; sleep 0.2; done
grep -q "^ready" "$WORK/node.log" || { cat "$WORK/node.log"; exit 1; }

# A profile written by hand: the AS's issuer, the CA bundle (certbound's root for nothing here
# but kept, node's server certificate), the key and certificate files. No directory, no cards, no kid.
P="$WORK/profile"; mkdir -p "$P"
cat "$WORK/data/ca.pem" "$WORK/node.pem" > "$P/ca-bundle.pem"
cp "$WORK/onboarded/"{transport.pem,transport.key,signing.pem,signing.key} "$P/"
cat > "$P/profile.toml" <<TOML
client_id = "peer-client"
authz = "https://localhost:28453"
ca = "ca-bundle.pem"
transport_certificate = "transport.pem"
transport_key = "transport.key"
signing_certificate = "signing.pem"
signing_key = "signing.key"
TOML
chmod 600 "$P/profile.toml"

"$BIN" discover --profile "$P" | tee "$WORK/discover.txt"
grep -q "token_endpoint *https://localhost:28453/token" "$WORK/discover.txt"

thumbprint=$(openssl x509 -in "$P/transport.pem" -outform DER | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '=')
check() {   # $1: the `certbound token` output; $2: the scopes it must carry
  python3 - "$1" "$2" "$thumbprint" <<'PY'
import base64, json, sys
lines = open(sys.argv[1]).read().splitlines()
token = lines[1]
payload = token.split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
assert sorted(claims["scope"].split()) == sorted(sys.argv[2].split()), claims
assert claims["cnf"]["x5t#S256"] == sys.argv[3], claims
print(f"   token: scope {claims['scope']!r}, cnf.x5t#S256 is the transport certificate's")
PY
}
"$BIN" token --profile "$P" --scope "cards.read pin.read" > "$WORK/token1.txt"
check "$WORK/token1.txt" "cards.read pin.read"

# The profile's own scope, and the token endpoint as the assertion's audience.
printf 'scope = "cards.read cards.write"\nassertion_audience = "token_endpoint"\n' >> "$P/profile.toml"
"$BIN" token --profile "$P" --refresh > "$WORK/token2.txt"
check "$WORK/token2.txt" "cards.read cards.write"
echo "the client works against node-oidc-provider: discover, token --scope, aud = issuer and token endpoint"
