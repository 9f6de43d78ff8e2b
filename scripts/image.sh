#!/usr/bin/env bash
# image.sh — build an OCI image per service with buildah, without a daemon
# and without pulling anything: FROM scratch, a static binary
# (CGO_ENABLED=0), the CA bundle and the time zone database copied from this
# machine, user 65532:65532. Each image is written as an OCI archive to
# bin/images/petrel-<service>.tar, ready for `skopeo copy`,
# `buildah push`, `podman load` or `ctr images import`.
#
# Usage: scripts/image.sh [service...]        (default: every service)
#   IMAGE_REGISTRY  image name prefix (default ghcr.io/petrel-mail, as the chart)
#   IMAGE_TAG       tag (default: git describe, else "dev")
#   GOARCH          target architecture (default: this machine's)
#
# buildah keeps its layers in its own storage under $PETREL_CACHE/buildah
# (vfs driver: works in containers without overlay or fuse), never in the
# machine's shared /var/lib/containers.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

ALL=(smtp delivery imap pop3 store)
services=("$@")
((${#services[@]})) || services=("${ALL[@]}")
for s in "${services[@]}"; do
	[[ " ${ALL[*]} " == *" $s "* ]] || { echo "image.sh: unknown service $s (want one of ${ALL[*]})" >&2; exit 2; }
done

REGISTRY=${IMAGE_REGISTRY:-ghcr.io/petrel-mail}
TAG=${IMAGE_TAG:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
PETREL_CACHE=${PETREL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/petrel}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
ZONEINFO=/usr/share/zoneinfo

if ! command -v buildah >/dev/null; then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		echo "image.sh: installing buildah (Debian package)" >&2
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null
	else
		echo "image.sh: buildah is missing; install it (Debian: apt-get install buildah)" >&2
		exit 1
	fi
fi
for f in "$CA_BUNDLE" "$ZONEINFO"; do
	[[ -e $f ]] || { echo "image.sh: $f missing (Debian packages ca-certificates, tzdata)" >&2; exit 1; }
done

tmp=$(mktemp -d)
ctr=
cleanup() {
	[[ -n $ctr ]] && bah rm "$ctr" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
bah() {
	buildah --storage-driver vfs --root "$PETREL_CACHE/buildah/storage" --runroot "$tmp/run" "$@"
}

mkdir -p bin/images
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
for s in "${services[@]}"; do
	image=$REGISTRY/petrel-$s:$TAG
	echo "image.sh: $image" >&2
	CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags='-s -w' \
		-o "$tmp/petrel-$s" "./services/$s/cmd/petrel-$s"

	ctr=$(bah from scratch)
	bah copy --quiet --chmod 0755 "$ctr" "$tmp/petrel-$s" /usr/local/bin/petrel-$s
	bah copy --quiet --chmod 0644 "$ctr" "$CA_BUNDLE" /etc/ssl/certs/ca-certificates.crt
	bah copy --quiet "$ctr" "$ZONEINFO" /usr/share/zoneinfo
	bah config \
		--entrypoint "[\"/usr/local/bin/petrel-$s\"]" \
		--cmd '' \
		--user 65532:65532 \
		--workingdir / \
		--env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
		--label org.opencontainers.image.title="petrel-$s" \
		--label org.opencontainers.image.source=https://github.com/petrel-mail/petrel \
		--label org.opencontainers.image.revision="$revision" \
		--label org.opencontainers.image.version="$TAG" \
		--label org.opencontainers.image.created="$created" \
		"$ctr"
	bah commit --quiet --format oci "$ctr" "$image" >/dev/null
	bah rm "$ctr" >/dev/null
	ctr=
	rm -f "bin/images/petrel-$s.tar"
	bah push --quiet "$image" "oci-archive:bin/images/petrel-$s.tar:$image"
	# The archive is the product; drop the layers so the cache stays small.
	bah rmi "$image" >/dev/null
	echo "image.sh: wrote bin/images/petrel-$s.tar ($(du -h "bin/images/petrel-$s.tar" | cut -f1))" >&2
done
