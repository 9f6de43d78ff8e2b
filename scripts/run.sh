#!/usr/bin/env bash
# run.sh — run Petrel on this machine: PostgreSQL, NATS (JetStream) and MinIO
# on loopback with a persistent data directory, then every service binary
# from bin/ (built by `make run`), with all logs in one stream prefixed by
# service. Ctrl-C or SIGTERM stops everything cleanly; a second start reuses
# the data. A service that crashes (killed by a signal, or after running a
# while) is restarted, as Kubernetes would; one that fails at start stops
# the whole run.
#
# On first start it creates the domain demo.test and the account
# demo@demo.test and prints the credentials with commands to try; later
# starts print them again without recreating anything.
#
# Settings (environment):
#   PETREL_RUN_DATA_DIR   data directory (default .data under the repository):
#                         deps/ (PostgreSQL, NATS, MinIO), store/ (tokens),
#                         run/ (pid files), demo-credentials
#   PETREL_<SERVICE>_<FLAG> or PETREL_<FLAG>   any service setting (see
#                         each binary's --help); e.g. PETREL_SMTP_MX_LISTEN
#   PETREL_POSTGRES_URL, PETREL_S3_*, PETREL_NATS_URL   use these instead of
#                         the dev dependencies
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

SERVICES=(store delivery smtp imap pop3)
DATA=${PETREL_RUN_DATA_DIR:-$ROOT/.data}
mkdir -p "$DATA/run" "$DATA/store"
DATA=$(cd "$DATA" && pwd)
export PETREL_LOG_FORMAT=${PETREL_LOG_FORMAT:-text}

# Dependencies in dev mode: own instances with data under $DATA/deps.
eval "$(PETREL_DEPS_DIR=${PETREL_DEPS_DIR:-$DATA/deps} bash scripts/test-deps.sh dev)"
export PETREL_POSTGRES_URL=${PETREL_POSTGRES_URL:-${PETREL_TEST_POSTGRES_URL%/postgres*}/postgres?sslmode=disable}
export PETREL_NATS_URL=${PETREL_NATS_URL:-$PETREL_TEST_NATS_URL}
export PETREL_S3_ENDPOINT=${PETREL_S3_ENDPOINT:-$PETREL_TEST_S3_ENDPOINT}
export PETREL_S3_ACCESS_KEY=${PETREL_S3_ACCESS_KEY:-$PETREL_TEST_S3_ACCESS_KEY}
export PETREL_S3_SECRET_KEY=${PETREL_S3_SECRET_KEY:-$PETREL_TEST_S3_SECRET_KEY}
export PETREL_S3_BUCKET=${PETREL_S3_BUCKET:-petrel}
export PETREL_S3_TLS=${PETREL_S3_TLS:-false}
# The store creates the bucket and, on first start, its token keys plus an
# operator token (for petrelctl) and one service token per service.
export PETREL_STORE_S3_CREATE_BUCKET=${PETREL_STORE_S3_CREATE_BUCKET:-true}
export PETREL_STORE_DEV_GENERATE_SECRETS=${PETREL_STORE_DEV_GENERATE_SECRETS:-true}
export PETREL_STORE_DATA_DIR=${PETREL_STORE_DATA_DIR:-$DATA/store}
# Local runs: self-signed certificates, and plaintext AUTH/LOGIN from
# loopback so that swaks and curl work without TLS options
# (ARCHITECTURE.md, Trust). Shared variables: each service reads those it
# has flags for.
export PETREL_DEV_SELF_SIGNED=${PETREL_DEV_SELF_SIGNED:-true}
export PETREL_ALLOW_PLAINTEXT_AUTH_LOOPBACK=${PETREL_ALLOW_PLAINTEXT_AUTH_LOOPBACK:-true}

STORE_GRPC=${PETREL_STORE_GRPC_LISTEN:-127.0.0.1:7070}
STORE_METRICS=${PETREL_STORE_METRICS_LISTEN:-127.0.0.1:9105}
declare -A METRICS=(
	[store]=$STORE_METRICS
	[smtp]=${PETREL_SMTP_METRICS_LISTEN:-127.0.0.1:9101}
	[delivery]=${PETREL_DELIVERY_METRICS_LISTEN:-127.0.0.1:9102}
	[imap]=${PETREL_IMAP_METRICS_LISTEN:-127.0.0.1:9103}
	[pop3]=${PETREL_POP3_METRICS_LISTEN:-127.0.0.1:9104}
)

for s in "${SERVICES[@]}"; do
	[[ -x bin/petrel-$s ]] || { echo "run: bin/petrel-$s missing; run 'make run'" >&2; exit 1; }
done

# supervise SERVICE: run the service, prefixing its output, and restart it
# when it crashes. Its pid is in $DATA/run/SERVICE.pid (the crash test
# kills it through that). TERM/INT are passed on to the service, which
# drains and exits; then supervise returns.
supervise() {
	local s=$1 child="" code started stopping=0 ENV=()
	# Each client of the store gets its own service token from the store's
	# data directory, through its own variable: one a binary lacks the
	# flag for would be refused as a typo (and the shared name
	# PETREL_STORE_TOKEN_FILE means --token-file to the store).
	local var=PETREL_${s^^}_STORE_TOKEN_FILE
	local help
	help=$("bin/petrel-$s" --help 2>&1 || true)
	if [[ $s != store && $help == *--store-token-file* ]]; then
		ENV+=("$var=${!var:-$PETREL_STORE_DATA_DIR/$s.token}")
	fi
	# Only run.sh's TERM stops the service (Ctrl-C's INT reaches the whole
	# process group, and stop() orders the shutdown), and only once: a
	# second signal during its drain would kill it.
	trap '' INT
	trap 'if ((!stopping)); then stopping=1; [[ -n $child ]] && kill -TERM "$child" 2>/dev/null; fi' TERM
	while :; do
		started=$SECONDS
		# setsid: the service gets its own process group, so Ctrl-C reaches
		# only this script, which then sends it exactly one TERM; sed ignores
		# the signals so the shutdown logs still get through.
		env "${ENV[@]}" setsid "bin/petrel-$s" > >(trap '' INT TERM; exec sed -u "s/^/[$s] /") 2>&1 &
		child=$!
		echo "$child" >"$DATA/run/$s.pid"
		code=0
		# wait returns early when a trapped signal arrives; wait again until
		# the service itself has exited.
		while kill -0 "$child" 2>/dev/null; do
			wait "$child" && code=0 || code=$?
		done
		rm -f "$DATA/run/$s.pid"
		((stopping)) && return 0
		if ((code <= 128 && SECONDS - started < 10)); then
			echo "[run] $s exited with status $code right after starting; stopping" >&2
			return 1
		fi
		echo "[run] $s exited with status $code; restarting it" >&2
		sleep 1
	done
}

pids=()
stop() {
	# Ignore further signals while stopping: make forwards its own TERM to
	# this script, so a second one arrives right after the first.
	trap '' INT TERM
	trap - EXIT
	echo "[run] stopping services" >&2
	# The store last: the others still call it while they drain.
	local p
	for p in "${pids[@]:1}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]:1}"; do wait "$p" 2>/dev/null || true; done
	((${#pids[@]})) && kill -TERM "${pids[0]}" 2>/dev/null || true
	wait || true
	echo "[run] stopped (data kept in $DATA; dependencies keep running: scripts/test-deps.sh dev-stop stops them)" >&2
}
trap stop INT TERM EXIT

ready() { curl -sf -o /dev/null "http://$1/readyz"; }
# wait_ready SERVICE SECONDS: true once the service answers /readyz; false
# after SECONDS or when its supervisor gave up.
wait_ready() {
	local deadline=$((SECONDS + $2))
	until ready "${METRICS[$1]}"; do
		((SECONDS < deadline)) || return 1
		kill -0 "${SUP[$1]}" 2>/dev/null || return 1
		sleep 0.2
	done
}

declare -A SUP
start() { supervise "$1" & pids+=($!); SUP[$1]=$!; }

# The store first: the others need its tokens and its API.
start store
wait_ready store 120 || { echo "[run] the store did not become ready" >&2; exit 1; }
for s in "${SERVICES[@]:1}"; do start "$s"; done

# demo: create demo.test and demo@demo.test once; print how to use them.
CTL=(bin/petrelctl --server "$STORE_GRPC" --token-file "$PETREL_STORE_DATA_DIR/operator.token")
CREDS=$DATA/demo-credentials
if [[ -x bin/petrelctl && ! -s $CREDS ]]; then
	pw=$(head -c 18 /dev/urandom | base64 | tr '+/' 'xy')
	code=0
	"${CTL[@]}" domain add demo.test >/dev/null || code=$?
	# 4: the domain exists already (an earlier start stopped half-way).
	if ((code == 0 || code == 4)) && printf '%s\n' "$pw" | "${CTL[@]}" account add demo@demo.test --password-stdin >/dev/null; then
		(umask 077 && printf 'DEMO_ADDRESS=demo@demo.test\nDEMO_PASSWORD=%s\n' "$pw" >"$CREDS.tmp" && mv "$CREDS.tmp" "$CREDS")
	else
		echo "[run] warning: could not create the demo account (see above); 'bin/petrelctl account passwd demo@demo.test --password-stdin' resets its password" >&2
	fi
fi
for s in "${SERVICES[@]:1}"; do
	if ! wait_ready "$s" 60; then
		kill -0 "${SUP[$s]}" 2>/dev/null || exit 1 # it failed at start; the EXIT trap stops the rest
		echo "[run] warning: $s is not ready yet (http://${METRICS[$s]}/readyz)" >&2
	fi
done
if [[ -s $CREDS ]]; then
	# shellcheck source=/dev/null
	source "$CREDS"
	smtp=${PETREL_SMTP_MX_LISTEN:-127.0.0.1:2525}
	sub=${PETREL_SMTP_SUBMISSION_LISTEN:-127.0.0.1:2587}
	# petrelctl finds .data/store/operator.token and 127.0.0.1:7070 by
	# itself; say where they are when this run moved them.
	ctl=bin/petrelctl
	[[ $STORE_GRPC == 127.0.0.1:7070 ]] || ctl="PETREL_SERVER=$STORE_GRPC $ctl"
	[[ $PETREL_STORE_DATA_DIR == "$ROOT/.data/store" ]] || ctl="PETREL_TOKEN_FILE=$PETREL_STORE_DATA_DIR/operator.token $ctl"
	cat >&2 <<EOF
[run] ------------------------------------------------------------------
[run] Petrel is running. Demo account: $DEMO_ADDRESS  password: $DEMO_PASSWORD
[run] (kept in $CREDS)
[run]
[run] send to it through the MX port:
[run]   swaks --server ${smtp%:*} --port ${smtp##*:} --from someone@example.org --to $DEMO_ADDRESS
[run] submit as it (AUTH without TLS is allowed from loopback):
[run]   swaks --server ${sub%:*} --port ${sub##*:} --auth PLAIN --auth-user $DEMO_ADDRESS --auth-password '$DEMO_PASSWORD' --from $DEMO_ADDRESS --to $DEMO_ADDRESS
[run] read it (once the IMAP service serves; IMAP 2143, IMAPS 2993):
[run]   curl -s --user '$DEMO_ADDRESS:$DEMO_PASSWORD' 'imap://127.0.0.1:2143/INBOX;UID=1'
[run]   openssl s_client -quiet -connect 127.0.0.1:2993
[run] administer it:
[run]   $ctl account list      (petrelctl help lists every command)
[run] Ctrl-C stops everything; data stays in $DATA.
[run] ------------------------------------------------------------------
EOF
fi
echo "[run] started ${SERVICES[*]}; Ctrl-C stops them" >&2
# Returns when a supervisor gives up (a service failing at start) or on a
# signal; the EXIT trap stops the rest.
wait -n "${pids[@]}" || true
