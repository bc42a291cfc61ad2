#!/usr/bin/env bash
# librdkafka's own test suite against `eddy broker`.
#
#   broker/librdkafka-suite.sh [--eddy PATH] [TEST-NUMBERS...]
#
# The suite ships in the source of the `rdkafka-sys` crate (the version in Cargo.lock, fetched
# by any cargo build of this workspace). This script copies it under
# $CARGO_TARGET_DIR/librdkafka-suite (default ~/.cache/eddy/target), builds librdkafka and its
# test runner there once (./configure without SSL, SASL and curl: Eddy's listener serves
# neither TLS nor SASL), starts `eddy broker` on a free loopback port over a scratch data
# directory, and runs each broker-facing test alone (quick mode, no sockem, as Kafka 3.9),
# with a time limit, printing one line per test and a summary. Tests that need what Eddy does
# not serve are listed in SKIP below, with the reason. Local tests (no broker) are not run:
# they test librdkafka, not the broker.
#
# Without TEST-NUMBERS (e.g. 0012 0017), every broker-facing test not in SKIP runs: about
# 40 minutes on 2 cores. The log of each test is kept beside the results.
set -euo pipefail
cd "$(dirname "$0")/.."

eddy=target/release/eddy
if [ "${1:-}" = "--eddy" ]; then
  eddy="$2"
  shift 2
fi
[ -x "$eddy" ] || { echo "no eddy binary at $eddy (cargo build --release -p eddy-cli, or --eddy PATH)" >&2; exit 2; }
eddy="$(cd "$(dirname "$eddy")" && pwd)/$(basename "$eddy")"

# What Eddy does not serve (see the README's "Kafka clients" section), and tests of librdkafka
# alone that need a tool beside the broker.
declare -A SKIP=(
  [0052]="msg_timestamps: creates its topics with Kafka's kafka-topics.sh (KAFKA_PATH)"
  [0077]="compaction: drives Kafka's own kafka-topics.sh (KAFKA_PATH)"
  [0081]="admin: its CreateTopics, DeleteTopics and CreatePartitions subtests pass, then CreateAcls (ACLs not served)"
  [0109]="auto_create_topics: drives Kafka's kafka-configs.sh (KAFKA_PATH)"
  [0097]="TLS"
  [0098]="client transactions"
  [0101]="fetch from follower (several brokers)"
  [0103]="client transactions"
  [0115]="SASL/ACLs"
  [0119]="SASL/ACLs"
  [0126]="SASL OAUTHBEARER/OIDC"
  [0129]="client transactions"
  [0135]="SASL"
  [0142]="SASL re-authentication"
)

version=$(awk '/^name = "rdkafka-sys"/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"rdkafka-sys-$version"/librdkafka 2>/dev/null | head -1)
[ -n "$src" ] || { echo "rdkafka-sys $version's source is not in cargo's registry: run cargo fetch" >&2; exit 2; }

work="${CARGO_TARGET_DIR:-$HOME/.cache/eddy/target}/librdkafka-suite"
tree="$work/librdkafka-$version"
if [ ! -x "$tree/tests/test-runner" ]; then
  echo "building librdkafka $version and its test runner in $tree (once; a few minutes)" >&2
  rm -rf "$tree"
  mkdir -p "$work"
  cp -r "$src" "$tree"
  (cd "$tree" && ./configure --disable-ssl --disable-gssapi --disable-sasl --disable-curl >/dev/null \
     && make -j"$(nproc)" libs >/dev/null 2>&1 \
     && make -C tests -j"$(nproc)" test-runner >/dev/null 2>&1)
fi

results="$work/results"
rm -rf "$results"
mkdir -p "$results"
data=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# As the suite's default scenario (tests/scenarios/default.json): topics auto-created with 4
# partitions.
"$eddy" --data-dir "$data/eddy" broker --listen "127.0.0.1:$port" --kafka-default-partitions 4 >"$results/broker.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null; wait $broker 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
cat >"$tree/tests/test.conf" <<EOF
metadata.broker.list=127.0.0.1:$port
test.timeout.multiplier=2
EOF

if [ $# -gt 0 ]; then
  tests=("$@")
else
  # Every test the runner knows, by number; the runner itself says which are local.
  mapfile -t tests < <(sed -n 's/^ *_TEST(\([0-9]\{4\}\)_.*/\1/p' "$tree/tests/test.c" | sort -u)
fi

passed=() failed=() skipped=()
for t in "${tests[@]}"; do
  [ "$t" = 0000 ] && continue
  case "$t" in 8*) continue ;; esac # manual tests
  if [ -n "${SKIP[$t]:-}" ]; then
    printf '%s  skipped: %s\n' "$t" "${SKIP[$t]}"
    skipped+=("$t")
    continue
  fi
  start=$(date +%s)
  set +e
  # In a shell of its own, whose report of a test that aborts goes to the test's log.
  (cd "$tree/tests" && LD_LIBRARY_PATH=../src:../src-cpp TESTS="$t" TEST_KAFKA_VERSION=3.9.0 \
    bash -c 'timeout 300 ./test-runner -Q -E -L -p1; exit $?') \
    >"$results/$t.log" 2>&1
  rc=$?
  set -e
  secs=$(($(date +%s) - start))
  if [ $rc -eq 0 ] && grep -q "Test ${t}_.* PASSED" "$results/$t.log"; then
    printf '%s  passed (%ss)\n' "$t" "$secs"
    passed+=("$t")
  elif [ $rc -eq 0 ]; then
    # Nothing ran: a local-only test, or one the runner skips for this broker version.
    printf '%s  not run by the runner (local or version-gated)\n' "$t"
  else
    printf '%s  FAILED (%ss; %s)\n' "$t" "$secs" "$results/$t.log"
    failed+=("$t")
  fi
done
echo "passed ${#passed[@]}: ${passed[*]}"
echo "failed ${#failed[@]}: ${failed[*]}"
echo "skipped ${#skipped[@]} (not served by Eddy): ${skipped[*]}"
[ ${#failed[@]} -eq 0 ]
