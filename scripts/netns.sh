#!/usr/bin/env bash
# scripts/netns.sh CMD [ARGS...]: run CMD in a new network namespace that has
# only the loopback interface (up), and a private mount namespace in which a
# fresh, private folder is bind-mounted over /tmp (OpenClaw writes openclaw*
# folders straight into the system temp folder).
#
# As root: unshare --net --mount --propagation private.
# Otherwise: unshare --user --map-root-user --net --mount.
#
# Also sets the offline knobs: Tailscale (for tsnet tests) and OpenClaw
# (no Bonjour, no update check, no channels, offline).
# CMD's exit status is this script's exit status.
set -euo pipefail

if [ "$#" -eq 0 ]; then
	echo "usage: scripts/netns.sh CMD [ARGS...]" >&2
	exit 2
fi

# Offline knobs, inherited by everything CMD starts.
export TS_NO_LOGS_NO_SUPPORT=1
export TS_DISABLE_PORTMAPPER=1
export OPENCLAW_DISABLE_BONJOUR=1
export OPENCLAW_NO_AUTO_UPDATE=1
export OPENCLAW_SKIP_CHANNELS=1
export OPENCLAW_OFFLINE=1

command -v unshare >/dev/null 2>&1 || { echo "[netns] unshare not found (util-linux); run scripts/deps.sh" >&2; exit 1; }
command -v ip >/dev/null 2>&1 || { echo "[netns] ip not found (iproute2); run scripts/deps.sh" >&2; exit 1; }

# The folder that becomes /tmp inside. Made on the host side so it outlives
# nothing: removed when CMD ends.
host_tmp_parent="${CLAWGATE_NETNS_TMP_PARENT:-/var/tmp}"
[ -d "$host_tmp_parent" ] && [ -w "$host_tmp_parent" ] || host_tmp_parent="${TMPDIR:-/tmp}"
private_tmp="$(mktemp -d "$host_tmp_parent/clawgate-netns-tmp.XXXXXX")"
chmod 1777 "$private_tmp"
cleanup() { rm -rf -- "$private_tmp" 2>/dev/null || true; }
trap cleanup EXIT

# Runs inside the namespaces. $1 = private tmp folder, the rest = CMD.
# shellcheck disable=SC2016
inner='
set -eu
private_tmp="$1"; shift
ip link set lo up
mount --bind "$private_tmp" /tmp
# The caller TMPDIR pointed outside the namespace view of /tmp; use the new one.
case "${TMPDIR:-}" in ""|/tmp|/tmp/*) export TMPDIR=/tmp ;; esac
links="$(ip -o link show | awk -F": " "{print \$2}" | tr "\n" " ")"
echo "[netns] network namespace interfaces: ${links% }; /tmp is private" >&2
exec "$@"
'

if [ "$(id -u)" -eq 0 ]; then
	set +e
	unshare --net --mount --propagation private -- bash -c "$inner" netns-inner "$private_tmp" "$@"
	rc=$?
	set -e
else
	set +e
	unshare --user --map-root-user --net --mount -- bash -c "$inner" netns-inner "$private_tmp" "$@"
	rc=$?
	set -e
fi
exit "$rc"
