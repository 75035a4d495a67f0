#!/usr/bin/env bash
# The README's quick start, exactly as written, from a clean clone of this checkout: the run
# command (`cargo run --release -- up`) must start certbound, every listener must answer
# /healthz, and SIGTERM must drain it and exit 0. (The other command, `cargo test --workspace`,
# is what CI runs anyway.)
set -euo pipefail
cd "$(dirname "$0")/.."
command=$(grep -m1 -o '^cargo run [^#]*' README.md | sed 's/ *$//')
[ "$command" = "cargo run --release -- up" ] || { echo "README's run command is now \`$command\`: update $0"; exit 1; }
WORK=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
git clone -q . "$WORK/certbound"
cd "$WORK/certbound"
# The clone is clean; the release build's output is kept between runs on this machine (a build
# cache, as any CI keeps one): the first run builds everything (about 9 minutes on 2 cores).
export CARGO_TARGET_DIR=${QUICKSTART_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/certbound-ci/quickstart-target}
echo "running \`$command\` in a clean clone (a release build first)"
$command > "$WORK/up.log" 2>&1 &
PID=$!
for _ in $(seq 1 1800); do
  grep -q "Stop with Ctrl-C" "$WORK/up.log" && break
  kill -0 "$PID" 2>/dev/null || { tail -30 "$WORK/up.log"; echo "\`$command\` exited early"; exit 1; }
  sleep 1
done
grep -q "Stop with Ctrl-C" "$WORK/up.log" || { tail -30 "$WORK/up.log"; echo "not up after 30 min"; exit 1; }
for port in 8441 8442 8443 8444; do
  answer=$(curl -s --cacert certbound-data/ca.pem "https://localhost:$port/healthz")
  [ "$answer" = ok ] || { echo "https://localhost:$port/healthz answered \`$answer\`"; exit 1; }
  echo "https://localhost:$port/healthz: ok"
done
kill -TERM "$PID"
status=0; wait "$PID" || status=$?
PID=""
[ "$status" = 0 ] || { tail -5 "$WORK/up.log"; echo "SIGTERM: exit $status, not 0"; exit 1; }
tail -2 "$WORK/up.log"
echo "SIGTERM: drained, exit 0"
