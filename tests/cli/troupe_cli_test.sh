#!/usr/bin/env bash
# The troupe executable as a user meets it: bad configuration stops it with a
# message naming the key; serve runs the demo and exits cleanly.
# Usage: troupe_cli_test.sh PATH_TO_TROUPE
set -uo pipefail
troupe="$1"
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

expect_config_error() {  # description, expected text, command...
  local description="$1" needle="$2"
  shift 2
  local out rc
  out="$("$@" 2>&1)"
  rc=$?
  [ "$rc" -eq 2 ] || fail "$description: exit code $rc, expected 2 (output: $out)"
  grep -qF -- "$needle" <<<"$out" || fail "$description: output does not name '$needle': $out"
}

expect_config_error "bad --set value" "aggregate.max_live" \
  "$troupe" config --set aggregate.max_live=0
expect_config_error "unknown --set key" "aggregate.max_lives" \
  "$troupe" serve --set aggregate.max_lives=5
expect_config_error "unknown env var" "TROUPE_LOG_LEVL" \
  env TROUPE_LOG_LEVL=info "$troupe" serve
expect_config_error "bad env value" "TROUPE_LOG_LEVEL" \
  env TROUPE_LOG_LEVEL=loud "$troupe" serve
tmp="$(mktemp)"
echo '{"aggregate": {"snapshot_every": "often"}}' >"$tmp"
expect_config_error "bad file value" "aggregate.snapshot_every" "$troupe" config --config "$tmp"
rm -f "$tmp"
# A per-type key for a category nobody registered is caught at start.
out="$("$troupe" serve --set http.port=0 --set store.kind=memory --set aggregate.types.bok.snapshot_every=5 --exit-after-demo 2>&1)"
rc=$?
[ "$rc" -eq 2 ] || fail "unregistered category: exit $rc, expected 2"
grep -qF "bok" <<<"$out" || fail "unregistered category not named: $out"

expect_config_error "unknown projection" "order_summary, orders_by_buyer, book_catalog, sales_by_book" \
  "$troupe" projection rebuild nope
out="$("$troupe" dead-letters replay 0 2>&1)"
rc=$?
[ "$rc" -ne 0 ] || fail "dead-letters replay 0 accepted"
grep -q "not in range 1" <<<"$out" || fail "dead-letters replay 0: no clear message: $out"

out="$("$troupe" config --set aggregate.max_live=7 2>&1)" || fail "config failed: $out"
grep -q "aggregate.max_live = 7 .*--set" <<<"$out" || fail "config does not show the override: $out"

out="$("$troupe" serve --set http.port=0 --set store.kind=memory --demo-orders 200 --exit-after-demo --set log.format=json 2>&1)"
rc=$?
[ "$rc" -eq 0 ] || fail "demo serve exit $rc: $out"
grep -q '"msg":"demo: 800 commands in .* 800 ok, 0 failed' <<<"$out" ||
  fail "demo did not report 800 ok commands as JSON lines: $out"

[ "$failures" -eq 0 ] && echo "troupe CLI: all checks passed"
exit $((failures > 0))
