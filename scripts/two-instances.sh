#!/usr/bin/env bash
# certbound in production shape: two instances on one PostgreSQL database and one master key.
# Instance A runs every part; instance B runs the authorization server and the Cards API only.
# Both publish one issuer (A's address stands in for the load balancer's), and the script shows
# that a token from either authorization server works at the other instance's Cards API. Then it
# stalls (SIGSTOP) and later kills (SIGKILL) instance A in the middle of bulk card jobs: B takes
# each job over, and each job makes exactly its quantity of cards, every one listed.
#
#   scripts/two-instances.sh [POSTGRES_ADMIN_URL]
#
# POSTGRES_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres) is a role that may
# create databases; the script creates (and afterwards drops) the database `certbound_two`.
# CERTBOUND names the binary (default target/release/certbound, else target/debug/certbound).
# Ports 19441-19444 (A) and 19453-19454 (B) must be free.
set -euo pipefail
cd "$(dirname "$0")/.."
ADMIN_URL=${1:-postgres://postgres@127.0.0.1:5432/postgres}
if [ -z "${CERTBOUND:-}" ]; then
  CERTBOUND=target/release/certbound; [ -x "$CERTBOUND" ] || CERTBOUND=target/debug/certbound
fi
[ -x "$CERTBOUND" ] || { echo "no certbound binary: run \`cargo build --release\` first"; exit 1; }
CERTBOUND=$(realpath "$CERTBOUND")
WORK=$(mktemp -d)
PIDS=()
DB=certbound_two
DATABASE_URL="${ADMIN_URL%/*}/$DB"
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql "$ADMIN_URL" -qAt -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }
wait_up() {   # $1: log file
  for _ in $(seq 1 150); do grep -q "Stop with Ctrl-C" "$1" && return 0; sleep 0.2; done
  cat "$1"; echo "certbound did not start"; exit 1
}
jwt_claim() {  # $1: JWT, $2: claim
  cut -d. -f2 <<<"$1" | tr '_-' '/+' | base64 -d 2>/dev/null | sed "s/.*\"$2\":\"\([^\"]*\)\".*/\1/"
}

step "1. a database for both instances"
psql "$ADMIN_URL" -qAt -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
echo "   $DATABASE_URL"

step "2. one master key for both (it seals every private key in the database)"
CERTBOUND_MASTER_KEY=$(openssl rand -hex 32)
export CERTBOUND_MASTER_KEY
echo "   CERTBOUND_MASTER_KEY=<64 hex digits from openssl rand -hex 32>"

ISSUER=https://localhost:19443
step "3. instance A: every part"
"$CERTBOUND" up --database-url "$DATABASE_URL" --data-dir "$WORK/a" --authz-issuer "$ISSUER" \
  --listen-directory 127.0.0.1:19441 --listen-directory-mtls 127.0.0.1:19442 \
  --listen-authz 127.0.0.1:19443 --listen-cards 127.0.0.1:19444 --listen-ops 127.0.0.1:19464 > "$WORK/a.log" 2>&1 &
PIDS+=($!)
wait_up "$WORK/a.log"
sed -n '1,6p' "$WORK/a.log" | sed 's/^/   /'

step "4. instance B: authz and cards only, trusting A's directory"
"$CERTBOUND" up --database-url "$DATABASE_URL" --data-dir "$WORK/b" --authz-issuer "$ISSUER" \
  --role authz,cards --directory-url https://localhost:19441 \
  --listen-authz 127.0.0.1:19453 --listen-cards 127.0.0.1:19454 --listen-ops 127.0.0.1:19474 > "$WORK/b.log" 2>&1 &
PIDS+=($!)
wait_up "$WORK/b.log"
sed -n '1,3p' "$WORK/b.log" | sed 's/^/   /'
cmp -s "$WORK/a/ca.pem" "$WORK/b/ca.pem" || { echo "the instances do not share their CA"; exit 1; }
echo "   both instances wrote the same ca.pem: one CA, from the shared database"

step "5. onboard a client at A"
"$CERTBOUND" onboard --directory https://localhost:19441 --authz https://localhost:19443 \
  --cards https://localhost:19444/api/v1 --ca "$WORK/a/ca.pem" \
  --admin-token-file "$WORK/a/admin.token" --out "$WORK/client" | sed 's/^/   /'
CA=$WORK/a/ca.pem
MTLS=(--cacert "$CA" --cert "$WORK/client/transport.pem" --key "$WORK/client/transport.key")

step "6. a token from A's authorization server works at B's Cards API"
TOKEN_A=$("$CERTBOUND" token --refresh --profile "$WORK/client" | sed -n 2p)
echo "   iss of A's token: $(jwt_claim "$TOKEN_A" iss)"
STATUS=$(curl -s -o "$WORK/created.json" -w '%{http_code}' "${MTLS[@]}" -H "Authorization: Bearer $TOKEN_A" \
  -H 'Content-Type: application/json' https://localhost:19454/api/v1/cards -d '{"cardType":"Virtual",
  "cardProduct":10001,"customerReference":"two-instances","cardHolder":{"firstName":"Ada",
  "lastName":"Lovelace","dateOfBirth":"1990-12-10"},"address":{"addressLine1":"1 High Street",
  "city":"London","postCode":"EC1A 1BB","country":"GBR"}}')
[ "$STATUS" = 201 ] || { echo "POST B/cards with A's token answered $STATUS: $(cat "$WORK/created.json")"; exit 1; }
CARD=$(sed 's/.*"publicToken":"\([^"]*\)".*/\1/' "$WORK/created.json")
echo "   POST B/cards with A's token: 201, publicToken $CARD"

step "7. a token from B's authorization server works at A's Cards API, and sees the card"
# Discovery names the shared issuer (A here), so the token request goes to B's socket by hand:
# a PS256 client assertion made with openssl from the profile's signing key.
profile_field() { sed -n "s/^$1 = \"\(.*\)\"/\1/p" "$WORK/client/profile.toml"; }
CLIENT_ID=$(profile_field client_id) KID=$(profile_field kid)
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
NOW=$(date +%s)
HEADER=$(printf '{"alg":"PS256","kid":"%s","typ":"JWT"}' "$KID" | b64url)
CLAIMS=$(printf '{"iss":"%s","sub":"%s","aud":"%s","iat":%s,"exp":%s,"jti":"%s"}' \
  "$CLIENT_ID" "$CLIENT_ID" "$ISSUER" "$NOW" $((NOW + 60)) "$(openssl rand -hex 16)" | b64url)
SIGNATURE=$(printf '%s.%s' "$HEADER" "$CLAIMS" | openssl dgst -sha256 -sign "$WORK/client/signing.key" \
  -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 | b64url)
STATUS=$(curl -s -o "$WORK/token.json" -w '%{http_code}' "${MTLS[@]}" https://localhost:19453/oauth2/token \
  -d grant_type=client_credentials -d client_id="$CLIENT_ID" \
  -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
  -d client_assertion="$HEADER.$CLAIMS.$SIGNATURE")
[ "$STATUS" = 200 ] || { echo "B's token endpoint answered $STATUS: $(cat "$WORK/token.json")"; exit 1; }
TOKEN_B=$(sed 's/.*"access_token":"\([^"]*\)".*/\1/' "$WORK/token.json")
echo "   POST B/oauth2/token: 200, iss $(jwt_claim "$TOKEN_B" iss)"
STATUS=$(curl -s -o "$WORK/card.json" -w '%{http_code}' "${MTLS[@]}" -H "Authorization: Bearer $TOKEN_B" \
  "https://localhost:19444/api/v1/cards/$CARD")
[ "$STATUS" = 200 ] && grep -q "\"publicToken\":\"$CARD\"" "$WORK/card.json" \
  || { echo "GET A/cards/$CARD with B's token answered $STATUS: $(cat "$WORK/card.json")"; exit 1; }
echo "   GET A/cards/$CARD with B's token: 200"

bulk_job() {   # $1: instance's Cards port; prints the job id
  curl -s "${MTLS[@]}" -H "Authorization: Bearer $TOKEN_B" -H 'Content-Type: application/json' \
    "https://localhost:$1/api/v1/cards/bulk" -d '{"cardProduct":10001,"cardType":"Virtual","quantity":50}' \
    | sed 's/.*"id":"\([^"]*\)".*/\1/'
}
job_listed() {   # $1: job id; prints how many cards the job lists (asked at B)
  curl -s "${MTLS[@]}" -H "Authorization: Bearer $TOKEN_B" \
    "https://localhost:19454/api/v1/cards/bulk?bulkCardRequestId=$1" | grep -o '"[0-9]\{9\}"' | sort -u | wc -l
}
job_status() {
  curl -s "${MTLS[@]}" -H "Authorization: Bearer $TOKEN_B" \
    "https://localhost:19454/api/v1/cards/bulk?bulkCardRequestId=$1" | sed 's/.*"status":"\([^"]*\)".*/\1/'
}
cards_in_database() {
  psql "$DATABASE_URL" -qAt -c "SELECT COUNT(*) FROM cards WHERE organisation_id = '$(profile_field org_id)'"
}
interrupt_a_mid_job() {   # $1: the signal for A; prints the job id
  local job
  job=$(bulk_job 19444)
  for _ in $(seq 1 200); do [ "$(job_listed "$job")" -ge 5 ] && break; sleep 0.05; done
  kill -"$1" "${PIDS[0]}"
  echo "$job"
}
wait_complete() {   # $1: job id
  for _ in $(seq 1 120); do [ "$(job_status "$1")" = Complete ] && return 0; sleep 0.5; done
  echo "job $1 did not complete: $(job_status "$1"), $(job_listed "$1") listed"; exit 1
}

step "8. A stalls (SIGSTOP) in the middle of a 50-card bulk job; B takes it over; A resumes"
BEFORE=$(cards_in_database)
JOB=$(interrupt_a_mid_job STOP)
echo "   A stopped with the job at $(job_listed "$JOB") cards"
wait_complete "$JOB"
kill -CONT "${PIDS[0]}"
sleep 3   # A's worker wakes up holding a lease that is no longer its own
LISTED=$(job_listed "$JOB") MADE=$(( $(cards_in_database) - BEFORE ))
echo "   job Complete: $LISTED cards listed, $MADE made"
[ "$LISTED" = 50 ] && [ "$MADE" = 50 ] || { echo "a 50-card job made $MADE cards and lists $LISTED"; exit 1; }

step "9. A is killed (SIGKILL) in the middle of a 50-card bulk job; B takes it over"
BEFORE=$(cards_in_database)
JOB=$(interrupt_a_mid_job KILL)
echo "   A killed with the job at $(job_listed "$JOB") cards"
wait_complete "$JOB"
LISTED=$(job_listed "$JOB") MADE=$(( $(cards_in_database) - BEFORE ))
echo "   job Complete: $LISTED cards listed, $MADE made"
[ "$LISTED" = 50 ] && [ "$MADE" = 50 ] || { echo "a 50-card job made $MADE cards and lists $LISTED"; exit 1; }

echo
echo "two instances, one database: tokens honoured across them, bulk jobs exactly once through stalls and crashes"
