#!/usr/bin/env bash
# The order flow, end to end, on the embedded store:
#   builds the sluice binary and the three handlers, starts a host in a
#   temporary data directory, creates the topics and queues, deploys the
#   handlers, takes one order through the HTTP front door (POST /api/orders)
#   and publishes two more (one invalid), and prints what happened.
# Needs only rustup; the wasm toolchain is installed by `sluice build` if missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "building the sluice binary"
cargo build --quiet -p sluice-host --bin sluice
sluice="$root/target/debug/sluice"

step "building the handlers (sluice build)"
export CARGO_TARGET_DIR="$root/target/guests"   # one target dir for every guest
"$sluice" build examples/order-flow/validate-order --out target/demo/validate-order.wasm
"$sluice" build examples/order-flow/fulfil-order --out target/demo/fulfil-order.wasm
"$sluice" build examples/order-flow/accept-order --out target/demo/accept-order.wasm
unset CARGO_TARGET_DIR

step "starting a host"
work="$(mktemp -d)"
"$sluice" serve --data-dir "$work/db" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/host.log" &
host_pid=$!
trap 'kill "$host_pid" 2>/dev/null || true; wait "$host_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/serve.out" 2>/dev/null && break
  kill -0 "$host_pid" 2>/dev/null || { cat "$work/host.log"; exit 1; }
  sleep 0.1
done
cat "$work/serve.out"
export SLUICE_URL SLUICE_DATA_DIR
SLUICE_URL="$(grep -o 'http://[0-9.:]*' "$work/serve.out" | head -1)"
# The CLI signs its requests with the root key `serve` wrote into the data directory.
SLUICE_DATA_DIR="$work/db"

step "creating topics and queues"
"$sluice" topic create orders >/dev/null
"$sluice" topic create fulfilled >/dev/null
"$sluice" queue create fulfil >/dev/null
"$sluice" queue create fulfilled-orders >/dev/null
"$sluice" topic subscribe fulfilled to-queue --queue fulfilled-orders >/dev/null
echo "topics: orders, fulfilled   queues: fulfil, fulfilled-orders"

step "deploying the handlers (sluice deploy)"
"$sluice" deploy validate-order target/demo/validate-order.wasm --topic orders --event-type orders.created >/dev/null
"$sluice" deploy fulfil-order target/demo/fulfil-order.wasm --queue fulfil >/dev/null
# The front door: POST /api/orders, callers identified by an API key, 100 requests a minute each.
api_key="shop-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
"$sluice" deploy accept-order target/demo/accept-order.wasm --route orders --method POST \
  --auth api-key --api-key "shop=$api_key" --rate-limit 100/60 >/dev/null
"$sluice" function list | grep -E '"(name|version|trigger)"|"queue"|"topic"' || true

line='{"sku":"widget","quantity":2,"unit_price_cents":1250}'
step "one order through the front door: POST $SLUICE_URL/api/orders (x-functions-key)"
order="{\"id\":\"A-1\",\"customer\":\"contoso\",\"lines\":[$line]}"
if command -v curl >/dev/null; then
  curl -sS -w ' (HTTP %{http_code})\n' -X POST "$SLUICE_URL/api/orders" \
    -H "x-functions-key: $api_key" -H 'content-type: application/json' -d "$order"
  curl -sS -w ' (HTTP %{http_code}: no key)\n' -X POST "$SLUICE_URL/api/orders" -d "$order"
else
  python3 - "$SLUICE_URL/api/orders" "$api_key" "$order" <<'PY'
import sys, urllib.request, urllib.error
url, key, order = sys.argv[1:]
for headers, note in (({"x-functions-key": key}, ""), ({}, ": no key")):
    request = urllib.request.Request(url, data=order.encode(), method="POST",
                                     headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request) as answer:
            print(answer.read().decode(), f"(HTTP {answer.status}{note})")
    except urllib.error.HTTPError as refused:
        print(refused.read().decode(), f"(HTTP {refused.code}{note})")
PY
fi

step "publishing two more orders (sluice publish)"
"$sluice" publish orders --type orders.created --subject orders/A-2 --id evt-A-2 \
  --data "{\"id\":\"A-2\",\"customer\":\"fabrikam\",\"lines\":[$line,{\"sku\":\"gadget\",\"quantity\":1,\"unit_price_cents\":750}]}"
"$sluice" publish orders --type orders.created --subject orders/A-3 --id evt-A-3 \
  --data '{"id":"A-3","customer":"northwind","lines":[{"sku":"widget","quantity":0,"unit_price_cents":1250}]}'

step "waiting for the flow to finish"
for _ in $(seq 1 300); do
  "$sluice" queue peek fulfilled-orders | grep "fulfilled-orders: 2 message" >/dev/null && \
  "$sluice" queue dead-letters orders/subscriptions/validate-order | grep ": 1 message" >/dev/null && break
  sleep 0.1
done

step "results: fulfilled orders (queue fulfilled-orders)"
"$sluice" queue peek fulfilled-orders

step "results: dead-lettered orders (validate-order's subscription)"
"$sluice" queue dead-letters orders/subscriptions/validate-order

step "what the handlers logged"
grep 'sluice::guest' "$work/host.log" | sed -E 's/\x1b\[[0-9;]*m//g' || true
grep -E 'handler finished|dead-lettered' "$work/host.log" | sed -E 's/\x1b\[[0-9;]*m//g' | tail -n 8 || true

"$sluice" queue peek fulfilled-orders | grep "fulfilled-orders: 2 message" >/dev/null || { echo "the flow did not complete; host log: $work/host.log"; exit 1; }
step "done: 2 orders fulfilled (one came in over HTTP), 1 dead-lettered with reason InvalidOrder (data in $work)"
