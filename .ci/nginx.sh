#!/usr/bin/env bash
# The seed flow through a real nginx in trusted-proxy mode: nginx terminates mutual TLS for the
# authorization server and the Cards API and forwards the client certificate in
# X-SSL-Client-Cert; certbound trusts the header only from nginx's address (nginx connects from
# 127.0.0.2, clients from 127.0.0.1) and verifies the chain itself. Registration, the
# certificate-bound token and a Cards API call all go through nginx; the directory's mTLS port is
# reached directly, as a client outside the proxy would.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CERTBOUND_BIN:-target/debug/certbound}
command -v nginx >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
WORK=$(mktemp -d); echo "work: $WORK"
cleanup() {
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  if [ -n "${PID:-}" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/certbound.toml" <<TOML
trusted_proxies = ["127.0.0.2/32"]
authz_issuer = "https://localhost:19443"
[listen]
directory = "127.0.0.1:18441"
directory_mtls = "127.0.0.1:18442"
authz = "127.0.0.1:18443"
cards = "127.0.0.1:18444"
[ops]
listen = "127.0.0.1:19464"
TOML
"$BIN" up --config "$WORK/certbound.toml" --data-dir "$WORK/data" > "$WORK/up.log" 2>&1 &
PID=$!
for _ in $(seq 1 50); do grep -q "Stop with Ctrl-C" "$WORK/up.log" && break; sleep 0.2; done
grep -q "Stop with Ctrl-C" "$WORK/up.log" || { cat "$WORK/up.log"; exit 1; }

# nginx's own server certificate, and a trust bundle for the client: certbound's root + nginx's.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$WORK/nginx.key" -out "$WORK/nginx.pem" 2>/dev/null
mkdir -p "$WORK/client-data"
cat "$WORK/data/ca.pem" "$WORK/nginx.pem" > "$WORK/client-data/ca.pem"
cp "$WORK/data/admin.token" "$WORK/client-data/admin.token"

proxy() {   # $1 listen port, $2 upstream port
  cat <<NGINX
  server {
    listen 127.0.0.1:$1 ssl;
    ssl_certificate $WORK/nginx.pem;
    ssl_certificate_key $WORK/nginx.key;
    ssl_client_certificate $WORK/data/ca.pem;
    ssl_verify_client optional;
    ssl_verify_depth 3;
    location / {
      proxy_pass https://127.0.0.1:$2;
      proxy_bind 127.0.0.2;
      proxy_ssl_trusted_certificate $WORK/data/ca.pem;
      proxy_ssl_verify on;
      proxy_ssl_name localhost;
      proxy_set_header X-SSL-Client-Cert \$ssl_client_escaped_cert;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
NGINX
}
cat > "$WORK/nginx.conf" <<NGINX
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events {}
http {
  access_log $WORK/nginx-access.log;
$(proxy 19443 18443)
$(proxy 19444 18444)
}
NGINX
nginx -c "$WORK/nginx.conf"

scripts/onboard-by-hand.sh "$WORK/client-data" "$WORK/client" https://localhost:18441 https://localhost:19443 '["programme-manager"]'
cd "$WORK/client"
STATUS=$(curl -s -o card.json -w '%{http_code}' --cacert "$WORK/client-data/ca.pem" --cert transport.pem --key transport.key \
  -H "Authorization: Bearer $(cat token)" -H 'Content-Type: application/json' https://localhost:19444/api/v1/cards -d '{
    "cardType":"Virtual","cardProduct":"10001","customerReference":"via-nginx",
    "cardHolder":{"firstName":"Ada","lastName":"Lovelace","dateOfBirth":"1990-12-10"},
    "address":{"addressLine1":"1 High Street","city":"London","postCode":"EC1A 1BB","country":"GBR"}}')
[ "$STATUS" = 201 ] || { echo "card through nginx: HTTP $STATUS"; cat card.json; cat "$WORK/nginx-error.log"; exit 1; }
echo "card created through nginx: $(sed 's/.*"publicToken":"\([^"]*\)".*/\1/' card.json)"
# Without a client certificate nginx forwards no header, and certbound refuses the bound token.
STATUS=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/client-data/ca.pem" -H "Authorization: Bearer $(cat token)" \
  https://localhost:19444/api/v1/cards/$(sed 's/.*"publicToken":"\([^"]*\)".*/\1/' card.json))
[ "$STATUS" = 401 ] || { echo "a bound token without its certificate got HTTP $STATUS through nginx"; exit 1; }
# A client that talks to certbound directly cannot forge the header: only nginx's address is
# trusted, so the header is ignored and the bound token refused.
STATUS=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/data/ca.pem" -H "Authorization: Bearer $(cat token)" \
  -H "X-SSL-Client-Cert: $(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(open(sys.argv[1]).read()))' transport.pem)" \
  https://localhost:18444/api/v1/cards/$(sed 's/.*"publicToken":"\([^"]*\)".*/\1/' card.json))
[ "$STATUS" = 401 ] || { echo "a forged X-SSL-Client-Cert sent directly got HTTP $STATUS"; exit 1; }
echo "nginx seed flow ok"

# The operations listener saw the same flow: its counters moved by exactly what the flow did, and
# Prometheus's own checker accepts the exposition.
command -v promtool >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }
[ "$(curl -s http://127.0.0.1:19464/readyz)" = ready ] || { echo "/readyz is not ready"; exit 1; }
[ "$(curl -s http://127.0.0.1:19464/livez)" = live ] || { echo "/livez is not live"; exit 1; }
curl -s http://127.0.0.1:19464/metrics > "$WORK/metrics.txt"
metric() { awk -v name="$1" '$1 == name { print $2 }' "$WORK/metrics.txt"; }
expect() {
  [ "$(metric "$1")" = "$2" ] || { echo "$1 is \`$(metric "$1")\`, expected $2"; grep '^certbound_' "$WORK/metrics.txt" | grep -v _bucket; exit 1; }
  echo "   $1 = $2"
}
expect 'certbound_tokens_issued_total{auth_method="private_key_jwt",part="directory"}' 1
expect 'certbound_tokens_issued_total{auth_method="private_key_jwt",part="authz"}' 1
expect 'certbound_certificates_total{action="issued",certificate_type="transport"}' 1
expect 'certbound_certificates_total{action="issued",certificate_type="signing"}' 1
expect 'certbound_registrations_total{action="registered"}' 1
expect 'certbound_cards_created_total' 1
expect 'certbound_refusals_total{part="cards",reason="invalid_token"}' 2
expect 'certbound_http_requests_total{part="cards",route="/api/v1/cards",status="201"}' 1
promtool check metrics < "$WORK/metrics.txt"
echo "metrics ok: promtool check metrics passed"
