#!/usr/bin/env bash
# Removes what scripts/install-system.sh put in place: stops the server
# (no process and no worker cgroup left), removes the units, the program and
# the user. The config and state stay unless PURGE=1 (as `apt purge` would).
# Takes the same PREFIX, CONFDIR, STATEDIR, WWWDIR, UNITDIR, SERVICE_USER (scripts/layout.sh).
set -euo pipefail

# shellcheck source=scripts/layout.sh
. "$(dirname "$0")/layout.sh"

[ "$(id -u)" -eq 0 ] || { echo "uninstall-system: run as root" >&2; exit 1; }

if [ -d /run/systemd/system ] && [ -e "$UNITDIR/miwidothttp.service" ]; then
  systemctl disable --now miwidothttp.socket miwidothttp.service 2>/dev/null || true
fi
# Started by hand, or systemd is not running here: stop it through its own CLI.
if [ -x "$PREFIX/bin/miwidothttp" ] && [ -e "$CONFDIR/miwidothttp.toml" ]; then
  "$PREFIX/bin/miwidothttp" stop -c "$CONFDIR/miwidothttp.toml" >/dev/null 2>&1 || true
fi
# The master removes each worker's cgroup as the worker exits; the parent it made goes here.
find /sys/fs/cgroup -maxdepth 3 -type d -name 'miwidothttp.slice' -exec rmdir {} + 2>/dev/null || true
rm -f "$UNITDIR/miwidothttp.service" "$UNITDIR/miwidothttp.socket"
[ -d /run/systemd/system ] && systemctl daemon-reload || true

rm -rf "${PREFIX:?}"
if id -u "$SERVICE_USER" >/dev/null 2>&1; then
  userdel "$SERVICE_USER" 2>/dev/null || true
  getent group "$SERVICE_USER" >/dev/null && groupdel "$SERVICE_USER" 2>/dev/null || true
fi
if [ "${PURGE:-0}" = 1 ]; then
  rm -rf "${CONFDIR:?}" "${STATEDIR:?}" "${WWWDIR:?}"
fi
if [ "${PURGE:-0}" = 1 ]; then echo "uninstall-system: removed, with config, state and site"; else echo "uninstall-system: removed (config in $CONFDIR and state in $STATEDIR kept; PURGE=1 removes them)"; fi
