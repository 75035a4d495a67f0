#!/usr/bin/env bash
# kill -9 in the middle of transfers and authorisations (issue 18): certbound up, two cards with
# 1000.00 each, then a storm of concurrent transfers between them and purchases (authorise, then
# clear or reverse) on the first; the server is killed with SIGKILL in the middle of it and
# started again on the same data. Then, from the API alone:
#   - every answer acknowledged before the kill is there (each transactionId in the list);
#   - a transfer is both legs or neither (each paying leg linked to its receiving leg);
#   - each card's balance is the sum of its settled lines, its pending amount the sum of the
#     holds not cleared or reversed, every line's balance the one before it plus its amount;
#   - money is conserved: the two balances add up to 2000.00 less the cleared purchases;
#   - nothing went below zero.
#
#   scripts/ledger-kill9.sh [DATABASE_URL]     (SQLite in a temporary data dir by default)
#
# CERTBOUND names the binary (default target/debug/certbound). Ports 27441-27444 must be free.
set -euo pipefail
cd "$(dirname "$0")/.."
CERTBOUND=$(realpath "${CERTBOUND:-target/debug/certbound}")
DATABASE_URL=${1:-}
WORK=$(mktemp -d)
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }
up() {   # $1: log name
  local args=(up --data-dir "$WORK/data" --no-ops --listen-directory 127.0.0.1:27441 --listen-directory-mtls 127.0.0.1:27442
              --listen-authz 127.0.0.1:27443 --listen-cards 127.0.0.1:27444)
  [ -n "$DATABASE_URL" ] && args+=(--database-url "$DATABASE_URL")
  "$CERTBOUND" "${args[@]}" > "$WORK/$1.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 150); do grep -q "Stop with Ctrl-C" "$WORK/$1.log" && return 0; sleep 0.2; done
  cat "$WORK/$1.log"; echo "certbound did not start"; exit 1
}

step "certbound up, a client, two cards with 1000.00 each"
up first
"$CERTBOUND" onboard --directory https://localhost:27441 --authz https://localhost:27443 \
  --cards https://localhost:27444/api/v1 --ca "$WORK/data/ca.pem" \
  --admin-token-file "$WORK/data/admin.token" --out "$WORK/client" > "$WORK/onboard.log"
"$CERTBOUND" token --profile "$WORK/client" > /dev/null

cat > "$WORK/cards.py" <<'PY'
import http.client, json, random, ssl, sys, threading, time, tomllib, uuid

work, mode = sys.argv[1], sys.argv[2]
profile = tomllib.load(open(f"{work}/client/profile.toml", "rb"))
token = profile["access_token"]
context = ssl.create_default_context(cafile=f"{work}/data/ca.pem")
context.load_cert_chain(f"{work}/client/transport.pem", f"{work}/client/transport.key")

def call(method, path, body=None):
    connection = http.client.HTTPSConnection("localhost", 27444, context=context, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   "IdempotencyKey": str(uuid.uuid4())}
        connection.request(method, "/api/v1" + path, json.dumps(body) if body is not None else None, headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()

if mode == "setup":
    cards = []
    for n in range(2):
        status, card = call("POST", "/cards", {"cardType": "Virtual", "cardProduct": "10001", "customerReference": f"kill9-{n}",
            "cardHolder": {"firstName": "Ada", "lastName": "Lovelace", "dateOfBirth": "1990-12-10"},
            "address": {"addressLine1": "1 High Street", "city": "London", "postCode": "EC1A 1BB", "country": "GBR"}})
        assert status == 201, card
        status, loaded = call("POST", f"/cards/{card['publicToken']}/transactions",
                              {"transactionType": "Load", "amount": "1000.00", "currencyCode": "GBP"})
        assert status == 200, loaded
        cards.append(card["publicToken"])
    json.dump(cards, open(f"{work}/cards.json", "w"))
    sys.exit(0)

a, b = json.load(open(f"{work}/cards.json"))
if mode == "storm":
    acknowledged, lock = [], threading.Lock()
    stop = threading.Event()
    def record(ids):
        with lock:
            acknowledged.extend(ids)
    def transfers(seed):
        rng = random.Random(seed)
        while not stop.is_set():
            source, target = (a, b) if rng.random() < 0.5 else (b, a)
            try:
                status, answer = call("POST", f"/cards/{source}/transactions", {"transactionType": "TransferFunds",
                    "amount": f"{rng.randint(1, 5000) / 100:.2f}", "currencyCode": "GBP", "toPublicToken": target})
            except Exception:
                stop.set(); break
            if status == 200:
                record([leg["transactionId"] for leg in answer["transaction"]])
    def purchases(seed):
        rng = random.Random(seed)
        while not stop.is_set():
            try:
                status, answer = call("POST", f"/sandbox/cards/{a}/authorisations",
                                      {"amount": f"{rng.randint(1, 3000) / 100:.2f}", "currencyCode": "GBP"})
                if status == 201:
                    record([answer["transactionId"]])
                    if answer["approved"]:
                        verb = "clear" if rng.random() < 0.7 else "reverse"
                        status, settled = call("POST", f"/sandbox/cards/{a}/authorisations/{answer['authorisationId']}/{verb}", {})
                        if status == 200:
                            record([settled["transactionId"]])
            except Exception:
                stop.set(); break
    threads = [threading.Thread(target=transfers, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=purchases, args=(10 + n,)) for n in range(2)]
    for thread in threads: thread.start()
    for thread in threads: thread.join(60)
    json.dump(acknowledged, open(f"{work}/acknowledged.json", "w"))
    print(f"{len(acknowledged)} lines acknowledged before the kill")
    sys.exit(0)

# mode == "check"
acknowledged = set(json.load(open(f"{work}/acknowledged.json")))
cents = lambda value: round(value * 100)
lines, balances = {}, {}
for card in (a, b):
    status, listed = call("GET", f"/cards/{card}/transactions")
    assert status == 200, listed
    lines[card] = listed
    status, balances[card] = call("GET", f"/cards/{card}/balance")
    assert status == 200
ids = {line["id"] for card in lines for line in lines[card]}
missing = acknowledged - ids
assert not missing, f"{len(missing)} acknowledged lines are gone: {sorted(missing)[:3]}"
by_id = {line["id"]: line for card in lines for line in lines[card]}
for card, listed in lines.items():
    settled = sum(cents(line["amount"]["billingValue"]) for line in listed if line["status"]["code"] == "S")
    assert settled == cents(balances[card]["cardBalance"]), (card, settled, balances[card])
    settling = {line["transactionLink"] for line in listed if line["type"]["code"] in ("P", "D")}
    held = sum(cents(line["amount"]["billingValue"]) for line in listed
               if line["type"]["code"] == "A" and line["status"]["code"] == "A" and line["transactionLink"] not in settling)
    assert held == cents(balances[card]["pendingAmount"]), (card, held, balances[card])
    previous = 0
    for line in listed:
        if line["status"]["code"] == "S":
            previous += cents(line["amount"]["billingValue"])
        assert cents(line["amount"]["actualBalance"]) == previous, line
        assert line["amount"]["availableBalance"] >= 0, line
    for line in listed:
        if line["processingCode"] == "40":
            other = by_id.get(line["transactionLink"])
            assert other is not None and other["transactionLink"] == line["id"], f"half a transfer: {line}"
cleared = sum(cents(line["amount"]["billingValue"]) for line in lines[a] if line["type"]["code"] == "P")
total = sum(cents(balances[card]["cardBalance"]) for card in (a, b))
assert total == 200000 + cleared, (total, cleared)
transfers = sum(1 for line in lines[a] if line["processingCode"] == "40")
print(f"consistent after kill -9: {len(ids)} lines, {transfers} transfer legs on the first card, "
      f"balances {balances[a]['cardBalance']} and {balances[b]['cardBalance']}, {-cleared / 100:.2f} spent")
PY
python3 "$WORK/cards.py" "$WORK" setup

step "a storm of transfers and purchases; SIGKILL in the middle of it"
python3 "$WORK/cards.py" "$WORK" storm &
STORM=$!
sleep 3
kill -KILL "$PID"; wait "$PID" 2>/dev/null || true; PID=""
wait "$STORM"

step "started again on the same data: every invariant, from the API"
up second
python3 "$WORK/cards.py" "$WORK" check
