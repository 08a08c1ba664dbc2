// Package compat is clawgate's compatibility suite: it judges clawgate by
// OpenClaw's own code rather than by our reading of its docs.
//
// Each test starts a fresh clawgate binary (built once per run) on a free
// loopback port and points a real OpenClaw client at it: the `openclaw` CLI
// (`gateway call health|status|system-presence`, `gateway health`, a wrong
// token), the package's own signed GatewayClient (testdata/gatewayclient.mjs),
// and a raw WebSocket client whose every received frame is validated against
// the protocol.schema.json that ships in @openclaw/gateway-protocol.
//
// The tools come from the environment that ./test.sh sets after
// scripts/deps.sh has installed them under .cache/:
//
//	CLAWGATE_NODE             Node >= 24.16 binary
//	CLAWGATE_OPENCLAW_DIR     node_modules/openclaw of openclaw@2026.9.6
//	CLAWGATE_OPENCLAW_SCHEMA  protocol.schema.json of @openclaw/gateway-protocol
//	CLAWGATE_REQUIRE_COMPAT   1: a missing tool fails the test instead of skipping it
//	CLAWGATE_BIN              optional prebuilt clawgate binary (skips the build)
//
// Everything runs on loopback only; ./test.sh runs `go test` inside a network
// namespace that has nothing but lo.
package compat
