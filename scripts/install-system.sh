#!/usr/bin/env bash
# Installs miwidothttp as a system service (run as root, from a built clone:
# `npm ci` first). `npm run install-system` runs this; `npm run
# uninstall-system` runs scripts/uninstall-system.sh.
#
#   PREFIX   where the program goes            (default /opt/miwidothttp)
#   CONFDIR  the config                        (default /etc/miwidothttp)
#   STATEDIR state: bans, certificates         (default /var/lib/miwidothttp)
#   WWWDIR   the default site, and the jail    (default /var/www/miwidothttp)
#   UNITDIR  systemd units                     (default /etc/systemd/system)
#   SERVICE_USER  whose group workers run in   (default miwidothttp)
#   RUNDIR   pid file and control socket       (default /run/miwidothttp)
#   BIND_ADDRESS, HTTP_PORT   for a new config  (default 0.0.0.0, 80)
#
# An existing config is never overwritten. The service is enabled and
# started when systemd runs this machine.
set -euo pipefail

# shellcheck source=scripts/layout.sh
. "$(dirname "$0")/layout.sh"
BIND_ADDRESS=${BIND_ADDRESS:-0.0.0.0}
HTTP_PORT=${HTTP_PORT:-80}
SOURCE=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "install-system: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (it creates a user, a service and root-only directories)"
[ -x "$SOURCE/native-helpers/build/miwidothttp-sandbox" ] && [ -x "$SOURCE/native-helpers/build/miwidothttp-listen" ] && [ -f "$SOURCE/native-helpers/build/miwidothttp-sandbox-lock.so" ] && [ -f "$SOURCE/dist/src/cli/main.js" ] || die "build first: npm ci"

# The workers' group (each worker runs as a uid of its own in it): a system
# user with its own group, no login, no home.
if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --user-group "$SERVICE_USER"
fi

# The program: the built tree, with its pinned Node runtime.
install -d -m 0755 "$PREFIX"
for part in bin dist node_modules share config systemd package.json README.md; do
  rm -rf "${PREFIX:?}/$part"
  cp -a "$SOURCE/$part" "$PREFIX/$part"
done
install -d -m 0755 "$PREFIX/native-helpers/build"
install -m 0755 "$SOURCE/native-helpers/build/miwidothttp-sandbox" "$SOURCE/native-helpers/build/miwidothttp-notify" "$SOURCE/native-helpers/build/miwidothttp-listen" "$PREFIX/native-helpers/build/"
# The shims the helper preloads into every worker (non-dumpable, no exec after start): beside the helper, root's, 0644.
install -m 0644 "$SOURCE/native-helpers/build/miwidothttp-sandbox-lock.so" "$SOURCE/native-helpers/build/miwidothttp-sandbox-nodump.so" "$PREFIX/native-helpers/build/"
install -m 0644 "$SOURCE/native-helpers/seccomp-default.list" "$PREFIX/native-helpers/"
chown -R root:root "$PREFIX"
chmod -R go-w "$PREFIX"

# The site and jail: readable by the workers, writable by root only.
install -d -m 0755 "$WWWDIR"
[ -e "$WWWDIR/index.html" ] || cp -a "$SOURCE/share/www/." "$WWWDIR/"

install -d -m 0700 "$STATEDIR"
install -d -m 0755 "$RUNDIR"
install -d -m 0755 "$CONFDIR"
if [ ! -e "$CONFDIR/miwidothttp.toml" ]; then
  cat > "$CONFDIR/miwidothttp.toml" <<CONFIG
# miwidothttp as installed by scripts/install-system.sh; every key with its
# default is in $PREFIX/config/miwidothttp.toml.
[server]
bind_address = "$BIND_ADDRESS"
http_port = $HTTP_PORT
pid_file = "$RUNDIR/miwidothttp.pid"
state_dir = "$STATEDIR"

[process.isolation]
# Each worker runs as a uid of its own, in the group of $SERVICE_USER.
run_as_group = "$SERVICE_USER"
chroot = "$WWWDIR"

[[vhosts]]
domains = ["*"]
root = "$WWWDIR"
CONFIG
  chmod 0640 "$CONFDIR/miwidothttp.toml"
fi
"$PREFIX/bin/miwidothttp" check -c "$CONFDIR/miwidothttp.toml" >/dev/null

install -d -m 0755 "$UNITDIR"
sed -e "s#@PREFIX@#$PREFIX#g" -e "s#/etc/miwidothttp/#$CONFDIR/#g" "$SOURCE/systemd/miwidothttp.service" > "$UNITDIR/miwidothttp.service"
install -m 0644 "$SOURCE/systemd/miwidothttp.socket" "$UNITDIR/miwidothttp.socket"
chmod 0644 "$UNITDIR/miwidothttp.service"

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --now miwidothttp.service
  echo "install-system: miwidothttp installed in $PREFIX and started (systemctl status miwidothttp)"
else
  echo "install-system: miwidothttp installed in $PREFIX; systemd is not running here, so start it with:"
  echo "  $PREFIX/bin/miwidothttp start -c $CONFDIR/miwidothttp.toml"
fi
