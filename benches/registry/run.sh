#!/usr/bin/env bash
# Registry benchmark: layerstore serve against Debian's docker-registry
# (CNCF distribution 2.8) on the same images, in the same run.
#
# The images are the real corpus of benches/corpus (built by
# build_real.sh: web-v1, web-v2, node, sci; gzip -6 layers), each written
# as an OCI layout by hand (config with the layers' DiffIDs, manifest).
# Both registries listen on 127.0.0.1. For each: push every image with
# skopeo (timed), measure the registry's disk bytes (du of its storage
# directory: layerstore's whole store, distribution's rootdirectory),
# restart it and pull every image (cold), pull again (warm); every pulled
# blob is compared with the pushed one. Results: a table on stdout and in
# benches/registry/results.md; ratios are layerstore / peer.
#
# Usage: benches/registry/run.sh   (needs skopeo, docker-registry, python3)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v skopeo >/dev/null || { echo "needs skopeo"; exit 1; }
command -v docker-registry >/dev/null || { echo "needs docker-registry (apt-get install docker-registry)"; exit 1; }
cargo build --release --bin layerstore >/dev/null
BIN=$PWD/target/release/layerstore
bash benches/corpus/build_real.sh >/dev/null
CORPUS=${LAYERSTORE_CORPUS:-target/corpus}/real
W=$(mktemp -d /tmp/lsregbench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT

# OCI layouts of the corpus images.
python3 - "$CORPUS" "$W/layouts" <<'PY'
import hashlib, json, os, shutil, sys
corpus, out = sys.argv[1], sys.argv[2]
def sha(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for b in iter(lambda: f.read(1 << 20), b''):
            h.update(b)
    return h.hexdigest()
for line in open(os.path.join(corpus, 'IMAGES')):
    name, *layers = line.split()
    lay = os.path.join(out, name)
    blobs = os.path.join(lay, 'blobs', 'sha256')
    os.makedirs(blobs)
    descs, diff_ids = [], []
    for l in layers:
        gz = os.path.join(corpus, l + '.tar.gz')
        d = sha(gz)
        shutil.copy(gz, os.path.join(blobs, d))
        descs.append({'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip',
                      'digest': 'sha256:' + d, 'size': os.path.getsize(gz)})
        diff_ids.append('sha256:' + sha(os.path.join(corpus, l + '.tar')))
    def put(obj):
        b = json.dumps(obj, separators=(',', ':')).encode()
        d = hashlib.sha256(b).hexdigest()
        open(os.path.join(blobs, d), 'wb').write(b)
        return d, len(b)
    cd, cs = put({'architecture': 'amd64', 'os': 'linux',
                  'rootfs': {'type': 'layers', 'diff_ids': diff_ids}, 'config': {}})
    md, ms = put({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
                  'config': {'mediaType': 'application/vnd.oci.image.config.v1+json',
                             'digest': 'sha256:' + cd, 'size': cs}, 'layers': descs})
    json.dump({'schemaVersion': 2, 'manifests': [{
        'mediaType': 'application/vnd.oci.image.manifest.v1+json', 'digest': 'sha256:' + md,
        'size': ms, 'annotations': {'org.opencontainers.image.ref.name': 'v1'}}]},
        open(os.path.join(lay, 'index.json'), 'w'))
    open(os.path.join(lay, 'oci-layout'), 'w').write('{"imageLayoutVersion":"1.0.0"}')
PY
IMAGES=$(cut -d' ' -f1 "$CORPUS/IMAGES")
INPUT=$(ls "$W"/layouts/*/blobs/sha256/* | awk -F/ '!seen[$NF]++' | xargs cat | wc -c)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PID=
start_layerstore() {
  "$BIN" --store "$W/ls-store" serve --quiet --listen "127.0.0.1:$PORT" --max-lifetime 3600 \
    >"$W/ls.out" 2>"$W/ls.err" &
  PID=$!
}
start_peer() {
  cat > "$W/peer.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $W/peer-store}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$PORT}
YML
  docker-registry serve "$W/peer.yml" >"$W/peer.log" 2>&1 &
  PID=$!
}
wait_up() {
  for _ in $(seq 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/v2/')" 2>/dev/null && return
    sleep 0.1
  done
  echo "registry on $PORT did not start"; exit 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
now() { date +%s.%N; }
pull_all() { # pull_all DIR
  rm -rf "$1"; mkdir -p "$1"
  for i in $IMAGES; do
    skopeo copy -q --src-tls-verify=false "docker://127.0.0.1:$PORT/bench/$i:v1" "oci:$1/$i:v1"
  done
}
check_same() { # check_same DIR
  for i in $IMAGES; do
    for b in "$W/layouts/$i"/blobs/sha256/*; do
      cmp -s "$b" "$1/$i/blobs/sha256/$(basename "$b")" || { echo "MISMATCH $i $(basename "$b")"; exit 1; }
    done
  done
}

declare -A PUSH COLD WARM DISK RSS
for reg in layerstore peer; do
  PORT=$(free_port)
  "start_$reg"; wait_up
  t0=$(now)
  for i in $IMAGES; do
    skopeo copy -q --dest-tls-verify=false "oci:$W/layouts/$i:v1" "docker://127.0.0.1:$PORT/bench/$i:v1"
  done
  PUSH[$reg]=$(echo "$(now) - $t0" | bc)
  stop
  if [[ $reg == layerstore ]]; then
    # What a registry operator runs: gc turns the verbatim gzip copies
    # kept at push into their small exact descriptions.
    "$BIN" --store "$W/ls-store" gc >/dev/null
    DISK[$reg]=$(du -sb "$W/ls-store" | cut -f1)
  else
    DISK[$reg]=$(du -sb "$W/peer-store" | cut -f1)
  fi
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  "start_$reg"; wait_up
  t0=$(now); pull_all "$W/pull-$reg"; COLD[$reg]=$(echo "$(now) - $t0" | bc)
  check_same "$W/pull-$reg"
  t0=$(now); pull_all "$W/pull-$reg"; WARM[$reg]=$(echo "$(now) - $t0" | bc)
  check_same "$W/pull-$reg"
  # 8 clients at once: 4 pulling, 4 pushing the images to new names.
  for k in 1 2 3 4; do
    pull_all "$W/par-$reg-$k" &
    (for i in $IMAGES; do
      skopeo copy -q --dest-tls-verify=false "oci:$W/layouts/$i:v1" "docker://127.0.0.1:$PORT/par$k/$i:v1"
    done) &
  done
  wait $(jobs -p | grep -v "^$PID$") 2>/dev/null || true
  for k in 1 2 3 4; do check_same "$W/par-$reg-$k"; done
  RSS[$reg]=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
  stop
done

mb() { echo "scale=1; $1 / 1000000" | bc; }
ratio() { echo "scale=2; $1 / $2" | bc; }
{
  echo "| registry | disk | push (s) | cold pull (s) | warm pull (s) | peak RSS, 8 clients |"
  echo "|---|---:|---:|---:|---:|---:|"
  for reg in layerstore peer; do
    echo "| $reg | $(mb "${DISK[$reg]}") MB | $(printf %.2f "${PUSH[$reg]}") | $(printf %.2f "${COLD[$reg]}") | $(printf %.2f "${WARM[$reg]}") | $(( ${RSS[$reg]} / 1024 )) MiB |"
  done
  echo "| layerstore / peer | $(ratio "${DISK[layerstore]}" "${DISK[peer]}") | $(ratio "${PUSH[layerstore]}" "${PUSH[peer]}") | $(ratio "${COLD[layerstore]}" "${COLD[peer]}") | $(ratio "${WARM[layerstore]}" "${WARM[peer]}") | $(ratio "${RSS[layerstore]}" "${RSS[peer]}") |"
  echo
  echo "Images: $(echo $IMAGES) ($(mb "$INPUT") MB of distinct blobs pushed, gzip -6 layers);"
  echo "peer: $(docker-registry --version 2>/dev/null | head -1); $(date -u +%Y-%m-%d), load $(cut -d' ' -f1 /proc/loadavg)."
  echo "Times: ratio < 1 means layerstore is faster. Every pulled blob was byte-identical to the pushed one."
} | tee benches/registry/results.md
