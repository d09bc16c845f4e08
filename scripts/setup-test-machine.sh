#!/usr/bin/env bash
# Prepares a Debian machine for the test suite: system packages, PostgreSQL with trust logins on loopback and a `test` database, Redis. Run as root (or with sudo); safe to run again.
set -euo pipefail

cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ---- system packages ----------------------------------------------------------------------
# Debian package -> a file that proves it is installed (only missing ones are installed).
#   postgresql         server binaries (initdb, pg_ctl, pg_basebackup) for the cluster tests, and the 5432 server
#   postgresql-client  psql, pgbench, pg_isready
#   pgbouncer          the side-by-side comparison tests
#   python3-psycopg    the psycopg client tests
#   redis-*            the distributed cache tests
#   chromium           the dashboard screenshot tests
#   patroni, etcd      the Patroni topology tests and the fleet coordination tests
#   util-linux         runuser (servers run as the postgres OS user)
declare -A NEED=(
  [postgresql]=/usr/bin/pg_ctlcluster
  [postgresql-client]=/usr/bin/pgbench
  [pgbouncer]=/usr/sbin/pgbouncer
  [python3-psycopg]=/usr/lib/python3/dist-packages/psycopg/__init__.py
  [redis-server]=/usr/bin/redis-server
  [redis-tools]=/usr/bin/redis-cli
  [git]=/usr/bin/git
  [ca-certificates]=/etc/ssl/certs/ca-certificates.crt
  [chromium]=/usr/bin/chromium
  [patroni]=/usr/bin/patroni
  [etcd-server]=/usr/bin/etcd
  [util-linux]=/usr/sbin/runuser
)
missing=()
for pkg in "${!NEED[@]}"; do
  [ -e "${NEED[$pkg]}" ] || missing+=("$pkg")
done
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
  log "system packages present"
fi

# ---- PostgreSQL ---------------------------------------------------------------------------
cluster_version="$(ls /etc/postgresql | sort -V | tail -n1)"
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL ${cluster_version}/main"
  as_root pg_ctlcluster --skip-systemctl-redirect "${cluster_version}" main start
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.5
  done
  pg_isready -h 127.0.0.1 -p 5432
fi

# The tests log in as postgres without a password over TCP: trust on loopback, first in pg_hba.conf.
if ! psql -X -w -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
  hba="/etc/postgresql/${cluster_version}/main/pg_hba.conf"
  log "allowing trust logins on loopback in ${hba} (a test machine: any local user may log in as any role)"
  as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "${hba}"
  as_root pg_ctlcluster --skip-systemctl-redirect "${cluster_version}" main reload
  for _ in $(seq 1 20); do
    psql -X -w -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.25
  done
fi
psql -X -w -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT version()'

if [ "$(psql -X -w -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'test'")" != "1" ]; then
  log "creating database test"
  createdb -w -h 127.0.0.1 -U postgres test
fi

# ---- Redis --------------------------------------------------------------------------------
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis on 127.0.0.1:6379"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/test-machine.log
  for _ in $(seq 1 40); do
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
    sleep 0.25
  done
fi
redis-cli -h 127.0.0.1 -p 6379 ping

log "ready: run  npm ci && npm test"
