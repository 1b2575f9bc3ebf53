# The install layout, shared by install-system.sh and uninstall-system.sh so
# that uninstall removes exactly what install put in place. Each directory
# can be set in the environment; these are the defaults.
PREFIX=${PREFIX:-/opt/miwidothttp}
CONFDIR=${CONFDIR:-/etc/miwidothttp}
STATEDIR=${STATEDIR:-/var/lib/miwidothttp}
WWWDIR=${WWWDIR:-/var/www/miwidothttp}
UNITDIR=${UNITDIR:-/etc/systemd/system}
SERVICE_USER=${SERVICE_USER:-miwidothttp}
RUNDIR=${RUNDIR:-/run/miwidothttp}
