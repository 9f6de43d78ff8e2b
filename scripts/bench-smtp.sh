#!/usr/bin/env bash
# bench-smtp.sh: Postfix's smtp-source against petrel-smtp and against a
# private stock Postfix delivering to Maildir, on this machine, in one run
# (docs/benchmarks.md, "SMTP ingress"). Needs the postfix package
# (/usr/sbin/smtp-source, /usr/sbin/postfix) and root, for Postfix.
#
# petrel-smtp runs with real NATS JetStream and real MinIO (from
# scripts/test-deps.sh), so each 250 means an S3 object plus a JetStream
# acknowledgement; its directory is internal/bench/benchdir over gRPC.
# The system Postfix is never touched: the private instance has its own
# config, queue and data directories under a temporary directory and
# listens on 127.0.0.1 only.
#
# Usage: scripts/bench-smtp.sh [SESSIONS...]   (default: 1 10 50)
# Environment: BENCH_MESSAGES (per run, default 5000), BENCH_SIZE (bytes,
# default 10240), PETREL_PORT (default 12525), POSTFIX_PORT (default 10025).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SESSIONS=("$@")
[[ ${#SESSIONS[@]} -gt 0 ]] || SESSIONS=(1 10 50)
MESSAGES=${BENCH_MESSAGES:-5000}
SIZE=${BENCH_SIZE:-10240}
PETREL_PORT=${PETREL_PORT:-12525}
POSTFIX_PORT=${POSTFIX_PORT:-10025}
DOMAIN=bench.test

for tool in /usr/sbin/smtp-source /usr/sbin/postfix; do
	if [[ ! -x $tool ]]; then
		echo "bench-smtp: $tool missing: DEBIAN_FRONTEND=noninteractive apt-get install -y postfix (then stop the system MTA if it started)" >&2
		exit 1
	fi
done
if [[ $(id -u) -ne 0 ]]; then
	echo "bench-smtp: the private Postfix needs root (it drops to the postfix user)" >&2
	exit 1
fi

TMP=$(mktemp -d /tmp/bench-smtp.XXXXXX)
# The postfix user must reach its queue and data directories inside.
chmod 755 "$TMP"
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [[ -f $TMP/postfix/etc/main.cf ]]; then
		postfix -c "$TMP/postfix/etc" stop >/dev/null 2>&1 || true
	fi
	[[ -n ${BENCH_KEEP:-} ]] || rm -rf "$TMP"
}
trap cleanup EXIT

eval "$(bash "$ROOT/scripts/test-deps.sh")"

echo "bench-smtp: building" >&2
(cd "$ROOT" && go build -o "$TMP/petrel-smtp" ./services/smtp/cmd/petrel-smtp && go build -o "$TMP/benchdir" ./services/smtp/internal/bench/benchdir)

wait_port() {
	for _ in $(seq 1 300); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "bench-smtp: nothing listens on port $1" >&2
	return 1
}

# rate SESSIONS PORT: runs smtp-source and prints messages per second.
rate() {
	local s=$1 port=$2 start end
	start=$(date +%s.%N)
	/usr/sbin/smtp-source -s "$s" -m "$MESSAGES" -l "$SIZE" -f "sender@example.org" -t "rcpt@$DOMAIN" "127.0.0.1:$port"
	end=$(date +%s.%N)
	awk -v m="$MESSAGES" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", m / (b - a) }'
}

# --- petrel-smtp ---------------------------------------------------------
BUCKET=bench-smtp-$$
NATS_PREFIX=bench$$
"$TMP/benchdir" --domain "$DOMAIN" --token-file "$TMP/smtp.token" --addr-file "$TMP/dir.addr" \
	--s3-endpoint "$PETREL_TEST_S3_ENDPOINT" --s3-bucket "$BUCKET" \
	--s3-access-key "$PETREL_TEST_S3_ACCESS_KEY" --s3-secret-key "$PETREL_TEST_S3_SECRET_KEY" 2>"$TMP/benchdir.log" &
PIDS+=($!)
for _ in $(seq 1 300); do [[ -s $TMP/dir.addr ]] && break; sleep 0.1; done
"$TMP/petrel-smtp" --log-level=warn --metrics-listen=127.0.0.1:0 \
	--mx-listen="127.0.0.1:$PETREL_PORT" --submission-listen= --submissions-listen= \
	--hostname=mx.bench.test --store-addr="$(cat "$TMP/dir.addr")" --store-token-file="$TMP/smtp.token" \
	--nats-url="$PETREL_TEST_NATS_URL" --nats-subject-prefix="$NATS_PREFIX" \
	--s3-endpoint="$PETREL_TEST_S3_ENDPOINT" --s3-bucket="$BUCKET" --s3-tls=false \
	--s3-access-key="$PETREL_TEST_S3_ACCESS_KEY" --s3-secret-key="$PETREL_TEST_S3_SECRET_KEY" \
	--check-sender-auth=false --max-conns-per-network=0 2>"$TMP/petrel-smtp.log" &
PETREL_PID=$!
PIDS+=($PETREL_PID)
wait_port "$PETREL_PORT"

declare -A PETREL_RATE POSTFIX_RATE
for s in "${SESSIONS[@]}"; do
	echo "bench-smtp: petrel-smtp, $s sessions" >&2
	PETREL_RATE[$s]=$(rate "$s" "$PETREL_PORT")
done
kill "$PETREL_PID"
wait "$PETREL_PID" 2>/dev/null || true
if grep -q '"level":"ERROR"\|level=ERROR' "$TMP/petrel-smtp.log"; then
	echo "bench-smtp: petrel-smtp logged errors:" >&2
	grep 'ERROR' "$TMP/petrel-smtp.log" | head -5 >&2
fi

# --- private stock Postfix, Maildir delivery -------------------------------
P=$TMP/postfix
mkdir -p "$P/etc" "$P/queue" "$P/data" "$P/mail"
chown postfix:postfix "$P/data" "$P/mail"
UIDN=$(id -u postfix)
GIDN=$(id -g postfix)
cat >"$P/etc/main.cf" <<EOF
compatibility_level = 3.6
config_directory = $P/etc
queue_directory = $P/queue
data_directory = $P/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.local
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_base = $P/mail
virtual_mailbox_maps = static:bench/Maildir/
virtual_uid_maps = static:$UIDN
virtual_gid_maps = static:$GIDN
maillog_file = $P/maillog
maillog_file_prefixes = $P
default_process_limit = 200
EOF
# Debian's master.cf with smtpd moved to 127.0.0.1:POSTFIX_PORT and no
# chroot (the private queue directory has no copy of /etc).
awk -v port="$POSTFIX_PORT" '
	/^smtp[ \t]+inet/ { print "127.0.0.1:" port " inet n - n - - smtpd"; next }
	/^[a-z]/ && NF >= 8 && $5 == "y" { $5 = "n" }
	{ print }
' /etc/postfix/master.cf >"$P/etc/master.cf"
postfix -c "$P/etc" set-permissions >/dev/null 2>&1 || true
# postfix(1) reports problems on stderr only when it is a terminal.
if ! postfix -c "$P/etc" check || ! postfix -c "$P/etc" start; then
	script -qc "postfix -c $P/etc check" /dev/null >&2 || true
	echo "bench-smtp: the private Postfix did not start; see $P/maillog" >&2
	exit 1
fi
wait_port "$POSTFIX_PORT"
for s in "${SESSIONS[@]}"; do
	echo "bench-smtp: postfix, $s sessions" >&2
	POSTFIX_RATE[$s]=$(rate "$s" "$POSTFIX_PORT")
done
postfix -c "$P/etc" stop >/dev/null

echo
echo "smtp-source -m $MESSAGES -l $SIZE, messages/s ($(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1))"
printf "%-10s %14s %14s\n" sessions petrel-smtp postfix
for s in "${SESSIONS[@]}"; do
	printf "%-10s %14s %14s\n" "$s" "${PETREL_RATE[$s]}" "${POSTFIX_RATE[$s]}"
done
