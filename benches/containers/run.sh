#!/usr/bin/env bash
# Overlay containers vs copy containers: create / diff / rm wall time and disk per
# container, on a ~250 MB 3-layer image built here (no network). Run as root (overlay
# mounts). Uses the release binary as built; does not build it. Not run by CI.
#
#   sudo benches/containers/run.sh        # env LAYERSTORE_BIN (default target/release/layerstore)
#
# Everything lives under one `mktemp -d /var/tmp/...` (ext4 root here), removed at exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${LAYERSTORE_BIN:-$PWD/target/release/layerstore}
[ "$(id -u)" = 0 ] || { echo "run as root (overlay mounts)" >&2; exit 1; }
work=$(mktemp -d /var/tmp/layerstore-containers.XXXXXX)
S1=$work/store-overlay S2=$work/store-copy N=6

overlay_mounts() { grep ' - overlay ' /proc/self/mountinfo | awk -v w="$work" 'index($5, w) == 1 {print $5}' || true; }
cleanup() { # safety net on any exit: remove containers, never rm -rf through a live mount
    local s m
    for s in "$S1" "$S2"; do
        [ -d "$s" ] || continue
        "$bin" --store "$s" container ls --json 2>/dev/null | names | xargs -r "$bin" --store "$s" container rm >/dev/null 2>&1 || true
    done
    for m in $(overlay_mounts); do echo "cleanup: LEAKED overlay mount $m, unmounting" >&2; umount "$m" || true; done
    if [ -n "$(overlay_mounts)" ]; then echo "cleanup: mounts remain, keeping $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# run CMD...: a layerstore call that must succeed; on failure print the exact command and its stderr
run() {
    if ! "$@" 2>"$work/err"; then
        echo "FAILED: $*" >&2; sed 's/^/  stderr: /' "$work/err" >&2; exit 1
    fi
    [ -s "$work/err" ] && sed 's/^/  (stderr) /' "$work/err" >&2 || true
}
now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }        # ms T0 T1
stats() { python3 -c 'import statistics as s,sys; v=[int(x) for x in sys.argv[1:]]; print(f"{s.median(v):g} / {max(v)}")' "$@"; }
names() { python3 -c 'import json,sys; print("\n".join(c["name"] for c in json.load(sys.stdin)))'; }
jget() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# --- 1. the image: 3 layers of a rootfs-like tree, fixed seed, GNU tar, OCI layout by hand ---
python3 - "$work/layers" <<'EOF'
import os, random, sys
root = sys.argv[1]; rng = random.Random(20261202)
words = "lib usr bin config value path module kernel socket thread buffer cache error init".split()
def put(layer, rel, data):
    p = os.path.join(root, layer, rel); os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f: f.write(data)
def text(n): return (" ".join(rng.choice(words) for _ in range(n // 6)) + "\n").encode()
# base (~210 MB): 3000 text files 0.2-8 KB, 60 files 50 KB-600 KB, 38 binaries of 5 MB
put("l1", "etc/os-release", b"NAME=bench\nVERSION=1\n")
for i in range(3000): put("l1", f"usr/share/doc/pkg{i % 150}/file{i}.txt", text(rng.randint(200, 8000)))
for i in range(60): put("l1", f"usr/lib/mod{i}.so", rng.randbytes(rng.randint(50_000, 600_000)))
for i in range(38): put("l1", f"opt/data/blob{i}.bin", rng.randbytes(5 << 20))
os.symlink("mod0.so", os.path.join(root, "l1/usr/lib/libmod.so"))
os.link(os.path.join(root, "l1/usr/lib/mod1.so"), os.path.join(root, "l1/usr/lib/mod1-alias.so"))
# layer 2 (~33 MB): 800 new text files, 4 new binaries, 2 base binaries rewritten
for i in range(800): put("l2", f"app/src/m{i % 40}/f{i}.py", text(rng.randint(200, 8000)))
for i in range(4): put("l2", f"app/assets/a{i}.bin", rng.randbytes(5 << 20))
for i in (3, 7): put("l2", f"opt/data/blob{i}.bin", rng.randbytes(5 << 20))
# layer 3 (~12 MB): 200 new files, 2 binaries rewritten, one config changed, one file deleted
for i in range(200): put("l3", f"app/plugins/p{i}.py", text(rng.randint(200, 4000)))
for i in (0, 11): put("l3", f"opt/data/blob{i}.bin", rng.randbytes(5 << 20))
put("l3", "etc/os-release", b"NAME=bench\nVERSION=1.3\n")
put("l3", "usr/share/doc/pkg5/.wh.file5.txt", b"")
EOF
mkdir -p "$work/oci/blobs/sha256"
for l in l1 l2 l3; do tar --numeric-owner --sort=name --mtime=@1764633600 -C "$work/layers/$l" -cf "$work/$l.tar" .; done
python3 - "$work" <<'EOF'
import hashlib, json, os, sys
w = sys.argv[1]; blobs = os.path.join(w, "oci/blobs/sha256")
def blob(data, mt):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, d), "wb").write(data)
    return {"mediaType": mt, "digest": "sha256:" + d, "size": len(data)}
layers = []
for l in ("l1", "l2", "l3"):
    data = open(os.path.join(w, l + ".tar"), "rb").read()
    layers.append(blob(data, "application/vnd.oci.image.layer.v1.tar"))
config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
          "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]},
          "history": [{"created_by": "bench " + l} for l in ("l1", "l2", "l3")]}
cfg = blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
man = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": cfg, "layers": layers}).encode(), "application/vnd.oci.image.manifest.v1+json")
man["annotations"] = {"org.opencontainers.image.ref.name": "bench:1"}
json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [man]},
          open(os.path.join(w, "oci/index.json"), "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(w, "oci/oci-layout"), "w"))
EOF
rm -rf "$work/layers"
tar_bytes=$(cat "$work"/l?.tar | wc -c); rm -f "$work"/l?.tar
imp=()
for s in "$S1" "$S2"; do
    t0=$(now); run "$bin" --store "$s" image import "$work/oci" >/dev/null; t1=$(now); imp+=("$(ms "$t0" "$t1")")
done
echo "image bench:1: 3 layers, $tar_bytes bytes of tar; import ${imp[0]} / ${imp[1]} ms (store 1 / 2)"
run "$bin" --store "$S1" image ls >&2

# unpacked image size: a checkout (the reference for "copies")
t0=$(now); run "$bin" --store "$S1" checkout bench:1 "$work/checkout" >/dev/null; t1=$(now)
image_bytes=$(du -sxb "$work/checkout" | cut -f1); checkout_ms=$(ms "$t0" "$t1")
t0=$(now); rm -rf "$work/checkout"; t1=$(now); rmrf_ms=$(ms "$t0" "$t1")   # plain rm -rf of one copy, for scale

# baseline: process start + store open, a trivial `container ls` (7 calls)
base=()
for i in 1 2 3 4 5 6 7; do t0=$(now); run "$bin" --store "$S1" container ls >/dev/null; t1=$(now); base+=("$(ms "$t0" "$t1")"); done

# --- 2. create N containers per scheme: first (overlay: unpacks the snapshots), then 2..N; du growth ---
declare -A first rest grow; sync_ms=()
for scheme in overlay copy; do
    s=$S1; [ "$scheme" = copy ] && s=$S2
    t0=$(now); sync; t1=$(now); sync_ms+=("create-$scheme $(ms "$t0" "$t1")")   # flush earlier writes first
    before=$(du -sxb "$s" | cut -f1); times=()
    for i in $(seq 1 "$N"); do
        t0=$(now); run "$bin" --store "$s" container create bench:1 --name "$scheme$i" --sharing "$scheme" --json >"$work/c.json"; t1=$(now)
        got=$(jget sharing <"$work/c.json")
        [ "$got" = "$scheme" ] || { echo "WRONG: container $scheme$i got sharing=$got" >&2; exit 1; }
        if [ "$i" = 1 ]; then first[$scheme]=$(ms "$t0" "$t1"); else times+=("$(ms "$t0" "$t1")"); fi
    done
    rest[$scheme]=$(stats "${times[@]}")
    grow[$scheme]=$(( $(du -sxb "$s" | cut -f1) - before ))
done
snapshots=$(find "$S1/snapshots" -mindepth 1 -maxdepth 1 -type d | wc -l)
mounts_live=$(overlay_mounts | wc -l)
listed=$(run "$bin" --store "$S1" container ls --json | names | wc -l)   # also checks the cleanup's parse

# --- 3. diff after changing one file through the merged root; isolation check on a sibling ---
declare -A diff_ms diff_out
for scheme in overlay copy; do
    s=$S1; [ "$scheme" = copy ] && s=$S2
    p=$(run "$bin" --store "$s" container path "${scheme}1")
    echo "VERSION=changed" >>"$p/etc/os-release"
    sib=$(run "$bin" --store "$s" container path "${scheme}2")
    grep -q changed "$sib/etc/os-release" && echo "WRONG: write in ${scheme}1 visible in ${scheme}2" >&2
    t0=$(now); run "$bin" --store "$s" container diff "${scheme}1" >"$work/diff"; t1=$(now)
    diff_ms[$scheme]=$(ms "$t0" "$t1"); diff_out[$scheme]=$(paste -sd';' "$work/diff")
done

# --- 4. rm each container (overlay: unmount + delete upper/work), then gc (overlay: drops snapshots) ---
# sync first: unmounting an overlay syncs its upper filesystem (all of /), which would charge
# the copy containers' dirty pages to the first overlay rm
t0=$(now); sync; t1=$(now); sync_ms+=("rm $(ms "$t0" "$t1")")
declare -A rm_ms gc_ms rm_all
for scheme in overlay copy; do
    s=$S1; [ "$scheme" = copy ] && s=$S2; times=()
    for i in $(seq 1 "$N"); do t0=$(now); run "$bin" --store "$s" container rm "$scheme$i" >/dev/null; t1=$(now); times+=("$(ms "$t0" "$t1")"); done
    rm_ms[$scheme]=$(stats "${times[@]}"); rm_all[$scheme]="${times[*]}"
    t0=$(now); run "$bin" --store "$s" gc --json >"$work/gc-$scheme.json"; t1=$(now); gc_ms[$scheme]=$(ms "$t0" "$t1")
done
left_mounts=$(overlay_mounts | wc -l)
left_snap=$(find "$S1/snapshots" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
# are snapshots ever reclaimed? image rm + gc on the overlay store
run "$bin" --store "$S1" image rm bench:1 >/dev/null; run "$bin" --store "$S1" gc --json >"$work/gc-imagerm.json"
left_snap2=$(find "$S1/snapshots" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
left_ctr=$(find "$S1/containers" "$S2/containers" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)

# --- report ---
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo
echo "unpacked image (du -sxb of a checkout): $image_bytes bytes; checkout ${checkout_ms} ms; rm -rf of it ${rmrf_ms} ms; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| scheme | create #1 ms | create #2..$N median / max ms | du growth, $N containers (bytes) | / image size | diff 1 changed file ms | rm median / max ms | gc after rm ms |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for scheme in overlay copy; do
    echo "| $scheme | ${first[$scheme]} | ${rest[$scheme]} | ${grow[$scheme]} | $(ratio "${grow[$scheme]}" "$image_bytes") | ${diff_ms[$scheme]} | ${rm_ms[$scheme]} | ${gc_ms[$scheme]} |"
done
echo "| baseline \`container ls\` (7 calls) | | $(stats "${base[@]}") | | | | | |"
echo
echo "diff output: overlay: ${diff_out[overlay]} | copy: ${diff_out[copy]}"
echo "overlay: $snapshots layer snapshots, $mounts_live overlay mounts with $N containers; after rm + gc: $left_mounts overlay mounts, $left_snap snapshots, $left_ctr container dirs left"
echo "container ls --json listed $listed of $N overlay containers; rm ms, in order: overlay ${rm_all[overlay]}; copy ${rm_all[copy]}"
echo "sync before each phase, ms: ${sync_ms[*]}"
echo "after image rm + gc: $left_snap2 snapshots left"
for f in gc-overlay gc-imagerm; do echo "$f: $(tr -d '\n' <"$work/$f.json")"; done
[ "$left_mounts" = 0 ] || echo "WRONG: overlay mounts leaked after container rm:" $(overlay_mounts) >&2
