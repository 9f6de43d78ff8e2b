#!/usr/bin/env bash
# test-deps.sh — make PostgreSQL, NATS (JetStream) and an S3 server (MinIO)
# reachable on loopback for the tests, and print the settings they read.
#
#   eval "$(scripts/test-deps.sh)"      # start or reuse, export settings
#   scripts/test-deps.sh stop           # stop the ones this script started
#   scripts/test-deps.sh dev            # same for `make run`: persistent data in .data/deps
#   scripts/test-deps.sh dev-stop       # stop those
#
# For each dependency, in order:
#   1. a setting already in the environment (PETREL_TEST_POSTGRES_URL,
#      PETREL_TEST_NATS_URL, PETREL_TEST_S3_ENDPOINT) is used as is;
#   2. an instance this script started earlier (state in $PETREL_DEPS_DIR) is
#      reused when it still answers;
#   3. PostgreSQL only: a server already listening on 127.0.0.1:5432 with
#      trust auth is used;
#   4. otherwise the script starts its own in $PETREL_DEPS_DIR, installing the
#      Debian package (postgresql, nats-server) or building MinIO with
#      `go install` at a pinned version, cached in $PETREL_CACHE.
#
# NATS is always the script's own (it starts in milliseconds): a system
# nats-server on 4222 is not reused, because its log and its fate are not
# ours — one vanished mid-run here with nothing in its log, and every NATS
# test after it failed; our own writes its stderr (a panic included) to
# $PETREL_DEPS_DIR/nats/nats.log and is started again by the next run.
#
# Only settings go to stdout; progress goes to stderr. With dev, the data
# directory is persistent ($PETREL_DEPS_DIR defaults to .data/deps under the
# repository) and the standard-port instances are not reused, so a developer's
# data never mixes with tests.
set -euo pipefail

MODE=${1:-start}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PETREL_CACHE=${PETREL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/petrel}
if [[ $MODE == dev || $MODE == dev-stop ]]; then
	PETREL_DEPS_DIR=${PETREL_DEPS_DIR:-$ROOT/.data/deps}
	PG_PORT=${PETREL_DEPS_PG_PORT:-55433}
	NATS_PORT=${PETREL_DEPS_NATS_PORT:-54223}
	S3_PORT=${PETREL_DEPS_S3_PORT:-59002}
else
	PETREL_DEPS_DIR=${PETREL_DEPS_DIR:-${TMPDIR:-/tmp}/petrel-test-deps}
	PG_PORT=${PETREL_DEPS_PG_PORT:-55432}
	NATS_PORT=${PETREL_DEPS_NATS_PORT:-54222}
	S3_PORT=${PETREL_DEPS_S3_PORT:-59000}
fi
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
NATS_SERVER_VERSION=v2.15.2
S3_USER=petrel-test
S3_PASS=petrel-test-secret

log() { printf 'test-deps: %s\n' "$*" >&2; }
die() { printf 'test-deps: error: %s\n' "$*" >&2; exit 1; }

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
	local secs=$1 what=$2; shift 2
	local deadline=$((SECONDS + secs))
	until "$@"; do
		((SECONDS < deadline)) || die "$what did not come up within ${secs}s"
		sleep 0.2
	done
}

apt_install() {
	[[ $(id -u) == 0 ]] || die "need root to apt-get install $*; install it or set the PETREL_TEST_* settings"
	log "installing Debian packages: $*"
	if [[ -z ${PETREL_APT_UPDATED:-} ]]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
		PETREL_APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

stop_all() {
	local d=$PETREL_DEPS_DIR
	if [[ -f $d/pg/data/postmaster.pid ]]; then
		log "stopping PostgreSQL"
		as_pg "$(pg_bin)/pg_ctl" -D "$d/pg/data" -m fast stop >&2 || true
	fi
	for svc in nats minio; do
		if [[ -f $d/$svc.pid ]]; then
			log "stopping $svc"
			kill "$(cat "$d/$svc.pid")" 2>/dev/null || true
			rm -f "$d/$svc.pid"
		fi
	done
}

# ---- PostgreSQL -----------------------------------------------------------

pg_bin() {
	local b
	b=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
	[[ -n $b && -x $b/initdb ]] && { echo "$b"; return; }
	b=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")
	[[ -x $b/initdb ]] && { echo "$b"; return; }
	return 1
}

as_pg() {
	if [[ $(id -u) == 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

postgres_url() {
	if [[ -n ${PETREL_TEST_POSTGRES_URL:-} ]]; then
		echo "$PETREL_TEST_POSTGRES_URL"; return
	fi
	local d=$PETREL_DEPS_DIR/pg
	if [[ -f $d/data/postmaster.pid ]] && port_open 127.0.0.1 "$PG_PORT"; then
		log "reusing PostgreSQL on 127.0.0.1:$PG_PORT"
		echo "postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"; return
	fi
	if [[ $MODE != dev ]] && port_open 127.0.0.1 5432; then
		log "using PostgreSQL already running on 127.0.0.1:5432"
		echo "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"; return
	fi
	local bin
	if ! bin=$(pg_bin); then
		apt_install postgresql
		bin=$(pg_bin) || die "PostgreSQL binaries not found after install"
	fi
	log "starting PostgreSQL ($bin) in $d on 127.0.0.1:$PG_PORT"
	mkdir -p "$d"
	if [[ $(id -u) == 0 ]]; then
		id postgres >/dev/null 2>&1 || useradd --system --home-dir "$d" postgres
		chown -R postgres "$d"
		chmod 755 "$PETREL_DEPS_DIR"
	fi
	if [[ ! -f $d/data/PG_VERSION ]]; then
		as_pg "$bin/initdb" -D "$d/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >&2 ||
			as_pg "$bin/initdb" -D "$d/data" -U postgres --auth=trust --encoding=UTF8 --no-locale >&2
	fi
	rm -f "$d/data/postmaster.pid"
	as_pg "$bin/pg_ctl" -D "$d/data" -l "$d/postgres.log" -w -t 60 \
		-o "-h 127.0.0.1 -p $PG_PORT -k $d -c max_connections=300 -c fsync=on" start >&2
	echo "postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
}

# ---- NATS -----------------------------------------------------------------

nats_url() {
	if [[ -n ${PETREL_TEST_NATS_URL:-} ]]; then
		echo "$PETREL_TEST_NATS_URL"; return
	fi
	local d=$PETREL_DEPS_DIR/nats
	if [[ -f $PETREL_DEPS_DIR/nats.pid ]] && kill -0 "$(cat "$PETREL_DEPS_DIR/nats.pid")" 2>/dev/null &&
		port_open 127.0.0.1 "$NATS_PORT"; then
		log "reusing NATS on 127.0.0.1:$NATS_PORT"
		echo "nats://127.0.0.1:$NATS_PORT"; return
	fi
	local bin
	bin=$(command -v nats-server 2>/dev/null || true)
	[[ -z $bin && -x /usr/sbin/nats-server ]] && bin=/usr/sbin/nats-server
	if [[ -z $bin ]]; then
		bin=$PETREL_CACHE/nats-server-$NATS_SERVER_VERSION/nats-server
		if [[ ! -x $bin ]]; then
			log "building nats-server $NATS_SERVER_VERSION with go install"
			GOBIN=$(dirname "$bin") GOFLAGS=-mod=mod GOWORK=off \
				go install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION" >&2
		fi
	fi
	log "starting NATS ($bin) in $d on 127.0.0.1:$NATS_PORT"
	mkdir -p "$d"
	setsid nohup "$bin" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$d" >"$d/nats.log" 2>&1 </dev/null &
	echo $! >"$PETREL_DEPS_DIR/nats.pid"
	wait_for 30 NATS port_open 127.0.0.1 "$NATS_PORT"
	echo "nats://127.0.0.1:$NATS_PORT"
}

# ---- S3 (MinIO) -----------------------------------------------------------

s3_live() { curl -sf -o /dev/null "http://127.0.0.1:$S3_PORT/minio/health/live"; }

s3_endpoint() {
	if [[ -n ${PETREL_TEST_S3_ENDPOINT:-} ]]; then
		echo "$PETREL_TEST_S3_ENDPOINT"; return
	fi
	local d=$PETREL_DEPS_DIR/minio
	if [[ -f $PETREL_DEPS_DIR/minio.pid ]] && kill -0 "$(cat "$PETREL_DEPS_DIR/minio.pid")" 2>/dev/null && s3_live; then
		log "reusing MinIO on 127.0.0.1:$S3_PORT"
		echo "127.0.0.1:$S3_PORT"; return
	fi
	command -v curl >/dev/null || apt_install curl ca-certificates
	local bin=$PETREL_CACHE/minio-$MINIO_VERSION/minio
	if [[ ! -x $bin ]]; then
		log "building MinIO $MINIO_VERSION with go install (a few minutes, once; cached in $PETREL_CACHE)"
		GOBIN=$(dirname "$bin") GOFLAGS=-mod=mod GOWORK=off \
			go install "github.com/minio/minio@$MINIO_VERSION" >&2
	fi
	log "starting MinIO in $d on 127.0.0.1:$S3_PORT"
	mkdir -p "$d/data"
	MINIO_ROOT_USER=$S3_USER MINIO_ROOT_PASSWORD=$S3_PASS MINIO_BROWSER=off MINIO_UPDATE=off \
		setsid nohup "$bin" server "$d/data" --quiet --address "127.0.0.1:$S3_PORT" \
		--console-address "127.0.0.1:$((S3_PORT + 1))" >"$d/minio.log" 2>&1 </dev/null &
	echo $! >"$PETREL_DEPS_DIR/minio.pid"
	wait_for 60 MinIO s3_live
	echo "127.0.0.1:$S3_PORT"
}

case $MODE in
stop | dev-stop) stop_all; exit 0 ;;
start | dev) ;;
*) die "usage: $0 [start|stop|dev|dev-stop]" ;;
esac

# test_tools: the real clients and peers the tests drive (swaks with TLS; Postfix's
# smtp-sink and smtp-source). Installed from Debian when missing; Postfix is
# preseeded to "No configuration" so that no system MTA is set up or started.
test_tools() {
	local missing=()
	command -v swaks >/dev/null || missing+=(swaks)
	# swaks speaks STARTTLS (--tls, --tlsc) through Net::SSLeay, a
	# recommendation apt_install does not pull in.
	perl -MNet::SSLeay -e1 2>/dev/null || missing+=(libnet-ssleay-perl)
	if ! command -v smtp-sink >/dev/null && [[ ! -x /usr/sbin/smtp-sink ]]; then
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
		missing+=(postfix)
	fi
	((${#missing[@]} == 0)) || apt_install "${missing[@]}"
}

mkdir -p "$PETREL_DEPS_DIR" "$PETREL_CACHE"
[[ $MODE != start ]] || test_tools
pg=$(postgres_url)
nats=$(nats_url)
s3=$(s3_endpoint)
if [[ -n ${PETREL_TEST_S3_ENDPOINT:-} ]]; then
	S3_USER=${PETREL_TEST_S3_ACCESS_KEY:?PETREL_TEST_S3_ACCESS_KEY must be set with PETREL_TEST_S3_ENDPOINT}
	S3_PASS=${PETREL_TEST_S3_SECRET_KEY:?PETREL_TEST_S3_SECRET_KEY must be set with PETREL_TEST_S3_ENDPOINT}
fi

cat <<EOF
export PETREL_TEST_POSTGRES_URL='$pg'
export PETREL_TEST_NATS_URL='$nats'
export PETREL_TEST_S3_ENDPOINT='$s3'
export PETREL_TEST_S3_ACCESS_KEY='$S3_USER'
export PETREL_TEST_S3_SECRET_KEY='$S3_PASS'
EOF
