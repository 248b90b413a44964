#!/usr/bin/env bash
# Builds the operator's container image without Docker, from binaries already built here, and
# optionally pushes it. The content is what the Dockerfile's distroless/cc:nonroot stage gives:
# the two binaries, the glibc libraries they link, the CA bundle, and a nonroot user 65532.
#
#   hack/image.sh [--push REGISTRY/REPOSITORY:TAG] [--insecure] [BINARY]
#
# BINARY defaults to target/release/imagestream-operator; kubectl-imagestream is taken from the
# same directory when it is there. The OCI layout is written to target/image/ (umoci), and
# --push copies it with skopeo (--insecure: plain HTTP or an unverified certificate).
# Needs umoci and skopeo (Debian: apt-get install umoci skopeo).
set -euo pipefail
cd "$(dirname "$0")/.."

push="" tls=true
while [ $# -gt 0 ]; do
  case $1 in
  --push) push=$2; shift 2 ;;
  --insecure) tls=false; shift ;;
  -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
  *) break ;;
  esac
done
bin=${1:-target/release/imagestream-operator}
[ -x "$bin" ] || { echo "hack/image.sh: no binary at $bin (cargo build --release first)" >&2; exit 1; }
for tool in umoci skopeo strip ldd; do
  command -v $tool >/dev/null || { echo "hack/image.sh: needs $tool (apt-get install umoci skopeo binutils)" >&2; exit 1; }
done

layout=target/image
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/rootfs/usr/local/bin" "$root/rootfs/etc/ssl/certs" "$root/rootfs/home/nonroot" "$root/rootfs/tmp"
chmod 1777 "$root/rootfs/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/rootfs/etc/group"
chown 65532:65532 "$root/rootfs/home/nonroot" 2>/dev/null || true
cp -L /etc/ssl/certs/ca-certificates.crt "$root/rootfs/etc/ssl/certs/"
binaries=("$bin")
[ -x "$(dirname "$bin")/kubectl-imagestream" ] && binaries+=("$(dirname "$bin")/kubectl-imagestream")
for b in "${binaries[@]}"; do
  strip -o "$root/rootfs/usr/local/bin/$(basename "$b")" "$b"
  # The dynamic loader and every library ldd lists, at the same paths.
  for lib in $(ldd "$b" | grep -o '/[^ ]*'); do
    mkdir -p "$root/rootfs$(dirname "$lib")"
    cp -L "$lib" "$root/rootfs$lib"
  done
done

rm -rf "$layout"
mkdir -p "$(dirname "$layout")"
umoci init --layout "$layout"
umoci new --image "$layout:latest"
# As root the files keep their owners (65532 owns its home); otherwise everything is root's.
rootless=$([ "$(id -u)" = 0 ] || echo --rootless)
umoci unpack $rootless --image "$layout:latest" "$root/bundle" >/dev/null
cp -a "$root/rootfs/." "$root/bundle/rootfs/"
umoci repack $rootless --image "$layout:latest" "$root/bundle" >/dev/null
umoci config --image "$layout:latest" --os linux --architecture amd64 \
  --config.entrypoint /usr/local/bin/imagestream-operator --config.cmd run \
  --config.user 65532:65532 --config.env PATH=/usr/local/bin:/usr/bin:/bin \
  --config.exposedports 8080/tcp \
  --config.label org.opencontainers.image.title=imagestream-operator \
  --config.label "org.opencontainers.image.version=$("$bin" --version | awk '{print $2}')"
umoci gc --layout "$layout"
echo "hack/image.sh: built $layout:latest from $bin" >&2

if [ -n "$push" ]; then
  skopeo copy -q --dest-tls-verify=$tls "oci:$layout:latest" "docker://$push"
  echo "hack/image.sh: pushed $push" >&2
fi
