#!/usr/bin/env bash
# The seed's onboarding with curl and openssl only, as README.md walks through it: creates an
# organisation and a software statement, has transport and signing CSRs signed, fetches the
# SSA, registers with the authorization server and gets a certificate-bound access token.
#
#   scripts/onboard-by-hand.sh DATA_DIR OUT_DIR [DIRECTORY_URL] [AUTHZ_URL] [ROLES_JSON]
#
# Leaves in OUT_DIR: transport.pem + <ssa_id>_transport.key (the mTLS identity), token (the
# access token), ids (org_id, ssa_id, client_id).
set -euo pipefail
DATA=$(cd "$1" && pwd); OUT=$2
D=${3:-https://localhost:8441}; A=${4:-https://localhost:8443}
ROLES=${5:-'["programme-manager","ws"]'}
mkdir -p "$OUT"; cd "$OUT"
CA=$DATA/ca.pem; ADMIN=$(cat "$DATA/admin.token")
json() { sed "s/.*\"$1\":\"\([^\"]*\)\".*/\1/"; }
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

DISCOVERY=$(curl -sf --cacert "$CA" "$D/.well-known/openid-configuration")
M=$(sed 's/.*"mtls_endpoint_aliases":{"token_endpoint":"\([^"]*\)".*/\1/' <<<"$DISCOVERY"); M=${M%/token}

echo "== organisation and software statement"
ORG=$(curl -sf --cacert "$CA" -H "Authorization: Bearer $ADMIN" "$D/organisations" \
  -d '{"OrganisationName":"Test Company 1","Country":"GB","RegistrationNumber":"00000001"}' | json OrganisationId)
SS=$(curl -sf --cacert "$CA" -H "Authorization: Bearer $ADMIN" "$D/organisations/$ORG/softwarestatements" \
  -d "{\"ClientName\":\"Test Company App 1\",\"Version\":\"1.0\",\"HomepageUri\":\"https://example.com\",
       \"LogoUri\":\"https://example.com/logo.png\",\"RedirectUri\":[\"https://example.com/callback\"],
       \"Roles\":$ROLES}" | json SoftwareStatementId)
CLIENT_ID=$D/openid_relying_party/$SS

echo "== transport and signing certificates from CSRs"
for kind in transport signing; do
  sh -c "$(curl -sf --cacert "$CA" -H "Authorization: Bearer $ADMIN" \
    "$D/organisations/$ORG/softwarestatements/$SS/certificates/$kind/csr-command")" 2>/dev/null
  curl -sf --cacert "$CA" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/pkcs10' \
    --data-binary "@${SS}_$kind.csr" "$D/organisations/$ORG/softwarestatements/$SS/certificates/$kind" > "$kind.json"
  sed 's/.*"Certificate":"\([^"]*\)".*/\1/; s/\\n/\n/g' "$kind.json" > "$kind.pem"
done
KID=$(json KeyId < signing.json)
MTLS=(--cacert "$CA" --cert transport.pem --key "${SS}_transport.key")

assertion() {   # $1: audience
  local now header claims
  now=$(date +%s)
  header=$(printf '{"alg":"PS256","kid":"%s","typ":"JWT"}' "$KID" | b64url)
  claims=$(printf '{"iss":"%s","sub":"%s","aud":"%s","iat":%s,"exp":%s,"jti":"%s"}' \
    "$CLIENT_ID" "$CLIENT_ID" "$1" "$now" $((now + 60)) "$(openssl rand -hex 16)" | b64url)
  printf '%s.%s.%s' "$header" "$claims" "$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 \
    -sign "${SS}_signing.key" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 | b64url)"
}

echo "== 2.1 RC Access Token"
RC=$(curl -sf "${MTLS[@]}" "$M/token" -d grant_type=client_credentials -d scope=directory:software \
  -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
  -d client_assertion="$(assertion "$M/token")" | json access_token)
echo "== 2.2 Get RC SSA"
curl -sf "${MTLS[@]}" -H "Authorization: Bearer $RC" "$M/organisations/$ORG/softwarestatements/$SS/assertion" > ssa.jwt
echo "== Cloudentity Well-Known"
ISSUER=$(curl -sf --cacert "$CA" "$A/.well-known/openid-configuration" | json issuer)
echo "== 2.3 Dynamic Client Registration"
curl -sf "${MTLS[@]}" "$ISSUER/oauth2/register" -H 'Content-Type: application/json' \
  -d "{\"software_statement\":\"$(cat ssa.jwt)\"}" > registration.json
echo "== Get Access Token"
curl -sf "${MTLS[@]}" "$ISSUER/oauth2/token" -d grant_type=client_credentials -d client_id="$CLIENT_ID" \
  -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
  -d client_assertion="$(assertion "$ISSUER")" | json access_token > token
ln -sf "${SS}_transport.key" transport.key
printf 'org_id=%s\nssa_id=%s\nclient_id=%s\n' "$ORG" "$SS" "$CLIENT_ID" > ids
cat ids
