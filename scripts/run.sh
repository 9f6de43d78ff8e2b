#!/usr/bin/env bash
# run.sh — run Petrel on this machine: PostgreSQL, NATS (JetStream) and MinIO
# on loopback with a persistent data directory under .data/, then every
# service binary from bin/ (built by `make run`), with all logs in one stream
# prefixed by service. Ctrl-C or SIGTERM stops everything cleanly; a second
# start reuses the data.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

SERVICES=(store delivery smtp imap pop3)
export PETREL_LOG_FORMAT=${PETREL_LOG_FORMAT:-text}

# Dependencies in dev mode: own instances with data under .data/deps.
eval "$(bash scripts/test-deps.sh dev)"
export PETREL_POSTGRES_URL=${PETREL_POSTGRES_URL:-${PETREL_TEST_POSTGRES_URL%/postgres*}/postgres?sslmode=disable}
export PETREL_NATS_URL=${PETREL_NATS_URL:-$PETREL_TEST_NATS_URL}
export PETREL_S3_ENDPOINT=${PETREL_S3_ENDPOINT:-$PETREL_TEST_S3_ENDPOINT}
export PETREL_S3_ACCESS_KEY=${PETREL_S3_ACCESS_KEY:-$PETREL_TEST_S3_ACCESS_KEY}
export PETREL_S3_SECRET_KEY=${PETREL_S3_SECRET_KEY:-$PETREL_TEST_S3_SECRET_KEY}

pids=()
stop() {
	trap - INT TERM EXIT
	echo "run: stopping services" >&2
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait || true
	echo "run: stopped (data kept in .data/; dependencies keep running: scripts/test-deps.sh dev-stop stops them)" >&2
}
trap stop INT TERM EXIT

for s in "${SERVICES[@]}"; do
	bin=bin/petrel-$s
	[[ -x $bin ]] || { echo "run: $bin missing; run 'make run'" >&2; exit 1; }
	# Prefix every line with the service name; $! is the service itself, so
	# the TERM in stop() reaches it and it drains cleanly.
	"$bin" > >(sed -u "s/^/[$s] /") 2>&1 &
	pids+=($!)
done
echo "run: started ${SERVICES[*]}; Ctrl-C stops them" >&2
wait -n || true
