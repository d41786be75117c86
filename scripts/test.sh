#!/usr/bin/env bash
# The second of ember's two commands: installs what is missing, builds the
# test guest, and runs the whole test suite (unit, conformance and
# end-to-end tests with real QEMU guests, and firecracker-go-sdk driving
# ember). Run it as root: the tests create taps and network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages
ensure_go
echo "== $(go version)"
guest/build.sh
go vet ./...
go test -count=1 -timeout 40m ./...
(cd tests/sdk && go test -count=1 -timeout 10m ./...)
# The binary-driving suites that take under 3 minutes against a race-built
# ember run again that way (tests/e2e, with TestKVM's L1 run, takes longer:
# EMBER_RACE=1 go test ./tests/e2e by hand).
EMBER_RACE=1 go test -count=1 -timeout 20m ./tests/conformance/ ./tests/badrequests/ ./tests/faults/
(cd tests/sdk && EMBER_RACE=1 go test -count=1 -timeout 10m ./...)
# Every fuzz target briefly, beyond its seeds: a count, not a time, so a
# loaded machine cannot fail it on the fuzzer's own deadline (long runs:
# FUZZTIME=10m scripts/fuzz.sh).
FUZZTIME="${FUZZTIME:-2000x}" scripts/fuzz.sh
