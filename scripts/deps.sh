#!/usr/bin/env bash
# scripts/deps.sh: install what the test suite needs, idempotently and
# without prompting (CI runs it as root with no stdin).
#
# Everything lands under .cache/ at the repository root (git-ignored):
#   .cache/node24    Node 24 from the npm package node@24 (OpenClaw needs >= 24.16)
#   .cache/openclaw  the real OpenClaw CLI, GatewayClient and node host
#   .cache/schema    @openclaw/gateway-protocol (ships protocol.schema.json)
# and it runs `go mod download`.
#
# Each step is skipped when its result is already there at the right version.
# Set CLAWGATE_DEPS_SKIP_APT=1 to never touch apt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

OPENCLAW_VERSION="2026.9.6"
SCHEMA_VERSION="2026.9.1"
NODE_MAJOR="24"
NODE_MIN="24.16.0"

CACHE=".cache"
NODE_DIR="$CACHE/node24"
OPENCLAW_DIR="$CACHE/openclaw"
SCHEMA_DIR="$CACHE/schema"

# Never wait for a prompt, never phone home more than the install needs.
export npm_config_yes=true
export npm_config_update_notifier=false
export npm_config_fund=false
export npm_config_audit=false
export npm_config_progress=false
export npm_config_loglevel="${npm_config_loglevel:-warn}"
export DEBIAN_FRONTEND=noninteractive

log() { printf '[deps] %s\n' "$*" >&2; }
die() { printf '[deps] ERROR: %s\n' "$*" >&2; exit 1; }

# version_ge A B: true when dotted version A >= B.
version_ge() {
	[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

# pkg_version DIR: the "version" field of DIR/package.json, or nothing.
pkg_version() {
	local f="$1/package.json"
	[ -f "$f" ] || return 0
	sed -n 's/^[[:space:]]*"version"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$f" | head -n1
}

# ensure_pkg_json DIR: give npm a project root of its own so it never walks
# up into the repository looking for one.
ensure_pkg_json() {
	mkdir -p "$1"
	[ -f "$1/package.json" ] || printf '{\n  "private": true\n}\n' >"$1/package.json"
}

# install_debian_packages: the system tools the harness uses (unshare from
# util-linux, ip from iproute2, mount; gcc for `go test -race`, which needs
# cgo; OpenSSH server and client for the SSH-tunnel test, which starts its
# own sshd on a loopback port). Installs only what is missing. The packaged
# sshd service is never started (the test runs a private one).
install_debian_packages() {
	local missing=()
	command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
	command -v ip >/dev/null 2>&1 || missing+=(iproute2)
	command -v mount >/dev/null 2>&1 || missing+=(mount)
	command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
	[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
	{ command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1; } || missing+=(openssh-client)
	# Headless Chromium for the WebChat browser test (cmd/clawgate/webchat_test.go).
	[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
	# systemd-analyze for the unit tests (deploy/systemd_test.go: verify and
	# the offline security review); the systemd service itself never runs.
	command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
	if [ "${#missing[@]}" -eq 0 ]; then
		log "debian packages: unshare, ip, mount, gcc, sshd, ssh, chromium, systemd-analyze present"
		return 0
	fi
	if [ "${CLAWGATE_DEPS_SKIP_APT:-0}" = 1 ]; then
		log "debian packages missing (${missing[*]}), CLAWGATE_DEPS_SKIP_APT=1: not installing"
		return 0
	fi
	if [ "$(id -u)" -ne 0 ]; then
		die "missing debian packages (${missing[*]}); install them as root"
	fi
	log "apt-get install ${missing[*]}"
	apt-get update -qq </dev/null
	apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
}

node24_bin() { echo "$ROOT/$NODE_DIR/node_modules/.bin/node"; }

install_node24() {
	local bin cur
	bin="$(node24_bin)"
	if [ -x "$bin" ] && cur="$("$bin" --version 2>/dev/null)" && version_ge "${cur#v}" "$NODE_MIN"; then
		log "node24: $cur already in $NODE_DIR"
		return 0
	fi
	log "node24: npm install node@$NODE_MAJOR into $NODE_DIR"
	ensure_pkg_json "$NODE_DIR"
	(cd "$NODE_DIR" && npm install --no-audit --no-fund "node@$NODE_MAJOR" </dev/null)
	[ -x "$bin" ] || die "node24: $bin missing after install"
	cur="$("$bin" --version)"
	version_ge "${cur#v}" "$NODE_MIN" || die "node24: got $cur, need >= $NODE_MIN"
	log "node24: installed $cur"
}

install_openclaw() {
	local have start end
	have="$(pkg_version "$OPENCLAW_DIR/node_modules/openclaw")"
	if [ "$have" = "$OPENCLAW_VERSION" ]; then
		log "openclaw: $have already in $OPENCLAW_DIR"
		return 0
	fi
	log "openclaw: npm install openclaw@$OPENCLAW_VERSION into $OPENCLAW_DIR (have '${have:-none}'; about 2 min, about 770 MB)"
	ensure_pkg_json "$OPENCLAW_DIR"
	start="$(date +%s)"
	(
		cd "$OPENCLAW_DIR"
		PATH="$(dirname "$(node24_bin)"):$PATH" \
			npm install --no-audit --no-fund "openclaw@$OPENCLAW_VERSION" </dev/null
	)
	end="$(date +%s)"
	have="$(pkg_version "$OPENCLAW_DIR/node_modules/openclaw")"
	[ "$have" = "$OPENCLAW_VERSION" ] || die "openclaw: installed version '${have:-none}', want $OPENCLAW_VERSION"
	log "openclaw: installed $have in $((end - start)) s"
}

install_schema() {
	local have
	have="$(pkg_version "$SCHEMA_DIR/node_modules/@openclaw/gateway-protocol")"
	if [ "$have" = "$SCHEMA_VERSION" ] && [ -f "$SCHEMA_DIR/node_modules/@openclaw/gateway-protocol/protocol.schema.json" ]; then
		log "schema: @openclaw/gateway-protocol $have already in $SCHEMA_DIR"
		return 0
	fi
	log "schema: npm install @openclaw/gateway-protocol@$SCHEMA_VERSION into $SCHEMA_DIR (have '${have:-none}')"
	ensure_pkg_json "$SCHEMA_DIR"
	(
		cd "$SCHEMA_DIR"
		PATH="$(dirname "$(node24_bin)"):$PATH" \
			npm install --no-audit --no-fund --save-exact "@openclaw/gateway-protocol@$SCHEMA_VERSION" </dev/null
	)
	have="$(pkg_version "$SCHEMA_DIR/node_modules/@openclaw/gateway-protocol")"
	[ "$have" = "$SCHEMA_VERSION" ] || die "schema: installed version '${have:-none}', want $SCHEMA_VERSION"
	log "schema: installed $have"
}

go_mod_download() {
	log "go mod download"
	go mod download </dev/null
}

main() {
	command -v npm >/dev/null 2>&1 || die "npm not found (needed to install node@$NODE_MAJOR)"
	command -v go >/dev/null 2>&1 || die "go not found"
	mkdir -p "$CACHE"
	install_debian_packages
	install_node24
	install_openclaw
	install_schema
	go_mod_download
	log "done: node $("$(node24_bin)" --version), openclaw $(pkg_version "$OPENCLAW_DIR/node_modules/openclaw"), schema $(pkg_version "$SCHEMA_DIR/node_modules/@openclaw/gateway-protocol")"
}

main "$@"
