#!/usr/bin/env bash
# Real-software layer corpus for the layerstore storage benchmark.
#
# Builds image-like layer sets from real software, using only the package
# registries this project can reach (Debian's archive via apt-get, PyPI via
# pip, npm). Output goes to $LAYERSTORE_CORPUS/real (default
# target/corpus/real) and is cached: a second run with a complete corpus
# (a MANIFEST file exists) does nothing. Delete the directory to rebuild.
#
# Layers (each written as NAME.tar and NAME.tar.gz, gzip -6 like registries;
# tars are GNU tar, sorted names, numeric owner 0:0):
#   base          ~40 real Debian bookworm packages (coreutils, bash, libc6,
#                 python3.11-minimal, perl-base, ...) fetched with
#                 `apt-get download` and unpacked with `dpkg-deb -x`
#   base-rebuilt  case (a): the same base rebuilt later: identical content,
#                 every mtime changed (touch -d)
#   py-v1         pip install --target: requests 2.31.0, flask 3.0.0
#   py-v2         case (b): the app layer rebuilt with two packages bumped
#                 (requests 2.32.3, flask 3.0.3), all mtimes changed
#   node          npm install express@4.18.2 lodash@4.17.21
#   numpy         pip install --target numpy 1.26.4 (big native libs)
# Images (case (c): several images share the base; a shared layer is the
# same blob, so every tool and a registry store it once):
#   web-v1 = base + py-v1; web-v2 = base-rebuilt + py-v2;
#   node = base + node; sci = base + numpy
# MANIFEST lists the distinct layers in ingest order, IMAGES the images,
# BUILD_SECONDS the wall time of the build.
set -euo pipefail
ROOT=${LAYERSTORE_CORPUS:-target/corpus}
OUT="$ROOT/real"
if [[ -f "$OUT/MANIFEST" ]]; then echo "real corpus cached in $OUT"; exit 0; fi
rm -rf "$OUT"; mkdir -p "$OUT/work"
OUT=$(cd "$OUT" && pwd); W="$OUT/work"
start=$(date +%s)

mktar() { # mktar SRC_DIR NAME : SRC_DIR's contents -> NAME.tar, NAME.tar.gz
  tar --sort=name --owner=0 --group=0 --numeric-owner -C "$1" -cf "$OUT/$2.tar" .
  gzip -6 -n -c "$OUT/$2.tar" > "$OUT/$2.tar.gz"
}

# --- base from Debian packages ---
PKGS="base-files base-passwd bash coreutils dash debianutils diffutils findutils grep gzip hostname
libc6 libc-bin libgcc-s1 libstdc++6 libssl3 libzstd1 liblzma5 libbz2-1.0 zlib1g libselinux1 libpcre2-8-0
libacl1 libattr1 libcap2 libgmp10 libtinfo6 libncursesw6 libreadline8 libsqlite3-0 libffi8 libexpat1
perl-base sed tar util-linux login passwd mawk ncurses-base tzdata ca-certificates openssl
python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libdb5.3 libuuid1"
mkdir -p "$W/debs" "$W/base"
(cd "$W/debs" && apt-get download $PKGS >/dev/null)
for d in "$W"/debs/*.deb; do dpkg-deb -x "$d" "$W/base"; done
mktar "$W/base" base
# (a) same content, all mtimes changed
cp -a "$W/base" "$W/base-rebuilt"
find "$W/base-rebuilt" -exec touch -h -d '2026-03-01 12:00:00' {} +
mktar "$W/base-rebuilt" base-rebuilt

# --- Python app layers ---
PIP="python3 -m pip install -q --no-compile --disable-pip-version-check --no-cache-dir"
SP=usr/local/lib/python3.11/site-packages
$PIP --target "$W/py-v1/$SP" requests==2.31.0 flask==3.0.0
mktar "$W/py-v1" py-v1
# (b) two packages bumped, fresh install => all mtimes new
$PIP --target "$W/py-v2/$SP" requests==2.32.3 flask==3.0.3
find "$W/py-v2" -exec touch -h -d '2026-03-01 12:00:00' {} +
mktar "$W/py-v2" py-v2
$PIP --target "$W/numpy/$SP" numpy==1.26.4
mktar "$W/numpy" numpy

# --- npm app layer ---
mkdir -p "$W/node/app"
(cd "$W/node/app" && echo '{"name":"app","version":"1.0.0","private":true}' > package.json &&
  npm install --silent --no-audit --no-fund express@4.18.2 lodash@4.17.21 >/dev/null)
mktar "$W/node" node

rm -rf "$W"
printf '%s\n' base base-rebuilt py-v1 py-v2 node numpy > "$OUT/MANIFEST.tmp"
cat > "$OUT/IMAGES" <<IMG
web-v1 base py-v1
web-v2 base-rebuilt py-v2
node base node
sci base numpy
IMG
echo $(( $(date +%s) - start )) > "$OUT/BUILD_SECONDS"
mv "$OUT/MANIFEST.tmp" "$OUT/MANIFEST"
echo "real corpus built in $OUT in $(cat "$OUT/BUILD_SECONDS") s"; ls -l "$OUT"
