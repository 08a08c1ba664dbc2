#!/usr/bin/env bash
# ./test.sh [GO TEST ARGS...]: the project's test command (CI runs it too).
#
# 1. scripts/deps.sh installs Node 24, openclaw@2026.9.6 and the protocol
#    schema under .cache/ (idempotent; only the first run downloads).
# 2. `go test -race -count=1 ./...` runs inside scripts/netns.sh: a network
#    namespace with only loopback and a private /tmp, so no test can send a
#    packet beyond lo. The compatibility suite (test/compat) finds the tools
#    through the CLAWGATE_* variables below and, with
#    CLAWGATE_REQUIRE_COMPAT=1, fails instead of skipping when one is missing.
#
# Extra arguments go to `go test` after the package list, e.g.
#   ./test.sh -run 'TestCLI|TestSchema' -v
# CLAWGATE_TEST_PKGS overrides the package list (default ./...).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

echo "[test] installing dependencies (scripts/deps.sh)" >&2
scripts/deps.sh </dev/null

export CLAWGATE_NODE="$ROOT/.cache/node24/node_modules/.bin/node"
export CLAWGATE_OPENCLAW_DIR="$ROOT/.cache/openclaw/node_modules/openclaw"
export CLAWGATE_OPENCLAW_SCHEMA="$ROOT/.cache/schema/node_modules/@openclaw/gateway-protocol/protocol.schema.json"
export CLAWGATE_REQUIRE_COMPAT=1

for p in "$CLAWGATE_NODE" "$CLAWGATE_OPENCLAW_DIR/package.json" "$CLAWGATE_OPENCLAW_SCHEMA"; do
	[ -e "$p" ] || { echo "[test] missing after scripts/deps.sh: $p" >&2; exit 1; }
done

read -r -a pkgs <<<"${CLAWGATE_TEST_PKGS:-./...}"
echo "[test] go test -race -count=1 ${pkgs[*]} $* (in a loopback-only network namespace)" >&2
exec scripts/netns.sh go test -race -count=1 "${pkgs[@]}" "$@" </dev/null
