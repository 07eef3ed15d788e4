#!/usr/bin/env bash
# layerstore storage benchmark: one command, see BENCHMARKS.md.
#
#   benches/corpus/run.sh               real corpus (built and cached on first use)
#   benches/corpus/run.sh --synthetic   deterministic synthetic corpus, no network
#   options: --no-sensitivity (skip the parameter sweep), --no-peers (layerstore only)
#
# Corpus: $LAYERSTORE_CORPUS (default target/corpus)/{real,synthetic}.
# Scratch: $LAYERSTORE_BENCH_WORK (default target/corpus-bench), wiped each run.
# Results: benches/corpus/results-MODE.md (tables), results-MODE.tsv,
#          sensitivity-MODE.md, results-MODE.png (chart, needs python3 matplotlib).
#
# Every tool ingests the same distinct layer tars of the corpus (layerstore
# from the .tar.gz blobs, as pulled from a registry, and again from the .tar),
# in MANIFEST order, into one repository per tool; then three chosen layers
# (the rebuilt base, the v2 app layer, the last layer) are restored and
# compared byte for byte with the original .tar (cmp). Times are wall-clock
# from GNU time (%e, 10 ms resolution), peak RSS its %M; caches are warm.
# Peers: registry/containerd layer-level dedup (distinct .tar.gz; restore =
# gunzip), zstd -3 -T2 per tar, borg 1.2 (one archive per layer holding the
# layer tar as a file, --compression zstd,3, default chunker), restic
# (--stdin, one snapshot per layer tagged with its name, repo v2 with default
# auto compression, restore = restic dump), casync (blob index per layer,
# --compression=zstd, default 16/64/256 KiB chunks, restore = casync extract).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=real SENS=1 PEERS=1
for a in "$@"; do
  case "$a" in
    --synthetic) MODE=synthetic ;;
    --no-sensitivity) SENS=0 ;;
    --no-peers) PEERS=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
ROOT=${LAYERSTORE_CORPUS:-target/corpus}
C="$ROOT/$MODE"
if [[ $MODE == real ]]; then
  benches/corpus/build_real.sh
else
  [[ -f "$C/MANIFEST" ]] || python3 benches/corpus/gen_synthetic.py "$C"
fi
C=$(cd "$C" && pwd)
W=${LAYERSTORE_BENCH_WORK:-target/corpus-bench}
rm -rf "$W"; mkdir -p "$W"; W=$(cd "$W" && pwd)
OUT=benches/corpus
cargo build --release --quiet --bin layerstore
LS=$PWD/target/release/layerstore

mapfile -t LAYERS < "$C/MANIFEST"
N=${#LAYERS[@]}
CHOSEN=("${LAYERS[1]}" "${LAYERS[3]}" "${LAYERS[$((N - 1))]}")
LOGICAL=0; GZ=0
for n in "${LAYERS[@]}"; do
  LOGICAL=$((LOGICAL + $(stat -c %s "$C/$n.tar")))
  GZ=$((GZ + $(stat -c %s "$C/$n.tar.gz")))
done
load() { cut -d' ' -f1 /proc/loadavg; }
t() { /usr/bin/time -f "%e %M" -a -o "$W/t.$1" "${@:2}"; }            # t KEY cmd...
sum() { awk '{s+=$1; if ($2>m) m=$2} END {printf "%.2f %d\n", s, m}' "$W/t.$1"; }
TSV="$OUT/results-$MODE.tsv"
printf 'tool\tkept\trepo_bytes\tingest_s\tingest_rss_kb\trestore_s\texact\tload\t%s\t%s\t%s\n' \
  "${CHOSEN[@]}" > "$TSV"
# row TOOL KEPT REPO_BYTES INGEST_KEY(or -) LOAD ; restore keys are r.TOOL.LAYER
row() {
  local tool=$1 kept=$2 repo=$3 ik=$4 ld=$5 is="-" ir="-" rs=0 ex=yes per=()
  if [[ $ik != - ]]; then read -r is ir < <(sum "$ik"); fi
  for n in "${CHOSEN[@]}"; do
    local s; s=$(sum "r.$tool.$n" | cut -d' ' -f1); per+=("$s")
    rs=$(awk -v a="$rs" -v b="$s" 'BEGIN{printf "%.2f", a+b}')
    cmp -s "$W/out.$tool.$n" "$C/$n.tar" || ex=NO
    rm -f "$W/out.$tool.$n"
  done
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$kept" "$repo" "$is" "$ir" "$rs" "$ex" "$ld" "${per[@]}" >> "$TSV"
  echo "$tool: repo $repo B, ingest ${is}s rss ${ir}KB, restore ${rs}s exact=$ex (load $ld)"
}

echo "corpus $C: $N layers, $LOGICAL B of tar, $GZ B of tar.gz; chosen: ${CHOSEN[*]}; load $(load)"

# --- layerstore, puts of the .tar.gz blobs (the headline) and of the .tar ---
for src in gz tar; do
  tool=layerstore; [[ $src == tar ]] && tool=layerstore-tar
  ext=.tar.gz; [[ $src == tar ]] && ext=.tar
  ld=$(load); S="$W/$tool"
  declare -A DIG=()
  for n in "${LAYERS[@]}"; do
    DIG[$n]=$(t "i.$tool" "$LS" --store "$S" put "$C/$n$ext" | awk 'NR==1{print $1}')
  done
  "$LS" --store "$S" stat --json > "$W/$tool.stat.json"
  for n in "${CHOSEN[@]}"; do
    t "r.$tool.$n" "$LS" --store "$S" get "${DIG[$n]}" -o "$W/out.$tool.$n"
  done
  stored=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stored_bytes"])' "$W/$tool.stat.json")
  row "$tool" "stored_bytes=$stored" "$(du -sb "$S" | cut -f1)" "i.$tool" "$ld"
  if [[ $src == gz ]]; then
    # The puts kept each gzip blob verbatim (exact at once); gc finds the
    # cheaper exact method (preflate) and drops the verbatim copies. The
    # row "layerstore+gc" counts the puts and that gc as its ingest.
    tool=layerstore+gc; ld=$(load)
    cp "$W/t.i.layerstore" "$W/t.i.$tool"
    t "i.$tool" "$LS" --store "$S" gc
    for n in "${CHOSEN[@]}"; do
      t "r.$tool.$n" "$LS" --store "$S" get "${DIG[$n]}" -o "$W/out.$tool.$n"
      # The original blob comes back too, byte for byte.
      gz_digest=sha256:$(sha256sum "$C/$n.tar.gz" | cut -d' ' -f1)
      t "b.$tool.$n" "$LS" --store "$S" get "$gz_digest" -o "$W/blob.$n"
      cmp -s "$W/blob.$n" "$C/$n.tar.gz" || { echo "blob of $n not exact" >&2; exit 1; }
      rm -f "$W/blob.$n"
    done
    "$LS" --store "$S" stat --json > "$W/$tool.stat.json"
    stored=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stored_bytes"])' "$W/$tool.stat.json")
    row "$tool" "stored_bytes=$stored" "$(du -sb "$S" | cut -f1)" "i.$tool" "$ld"
    for n in "${CHOSEN[@]}"; do echo "  exact .tar.gz of $n rebuilt in $(sum "b.$tool.$n" | cut -d' ' -f1) s"; done
  fi
done

if [[ $PEERS == 1 ]]; then
  # --- registry: layer-level dedup of the .tar.gz blobs ---
  ld=$(load)
  for n in "${CHOSEN[@]}"; do t "r.registry.$n" bash -c 'gzip -dc "$1" > "$2"' _ "$C/$n.tar.gz" "$W/out.registry.$n"; done
  row registry "distinct .tar.gz" "$GZ" - "$ld"

  # --- zstd -3 -T2 of the distinct tars ---
  ld=$(load); mkdir -p "$W/zstd"
  for n in "${LAYERS[@]}"; do t i.zstd zstd -q -3 -T2 -f "$C/$n.tar" -o "$W/zstd/$n.tar.zst"; done
  for n in "${CHOSEN[@]}"; do t "r.zstd.$n" zstd -q -d -f "$W/zstd/$n.tar.zst" -o "$W/out.zstd.$n"; done
  row zstd "per-tar .zst" "$(du -sb "$W/zstd" | cut -f1)" i.zstd "$ld"

  # --- borg ---
  ld=$(load)
  export BORG_BASE_DIR="$W/borg-base" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
  borg init -e none "$W/borg"
  for n in "${LAYERS[@]}"; do
    t i.borg bash -c 'cd "$1" && borg create --compression zstd,3 "$2::$3" "$3.tar"' _ "$C" "$W/borg" "$n"
  done
  for n in "${CHOSEN[@]}"; do
    t "r.borg.$n" bash -c 'cd "$1" && borg extract --stdout "$2::$3" "$3.tar" > "$4"' _ "$C" "$W/borg" "$n" "$W/out.borg.$n"
  done
  row borg "repo (du)" "$(du -sb "$W/borg" | cut -f1)" i.borg "$ld"

  # --- restic ---
  ld=$(load)
  export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$W/restic-cache" RESTIC_REPOSITORY="$W/restic"
  restic init -q --repository-version 2
  for n in "${LAYERS[@]}"; do
    t i.restic bash -c 'restic backup -q --stdin --stdin-filename "$1.tar" --tag "$1" < "$2"' _ "$n" "$C/$n.tar"
  done
  for n in "${CHOSEN[@]}"; do
    t "r.restic.$n" bash -c 'restic dump -q --tag "$1" latest "/$1.tar" > "$2"' _ "$n" "$W/out.restic.$n"
  done
  row restic "repo (du)" "$(du -sb "$W/restic" | cut -f1)" i.restic "$ld"

  # --- casync ---
  ld=$(load); mkdir -p "$W/casync"
  for n in "${LAYERS[@]}"; do
    t i.casync casync make --compression=zstd --store="$W/casync/store" "$W/casync/$n.caibx" "$C/$n.tar" > /dev/null
  done
  for n in "${CHOSEN[@]}"; do
    t "r.casync.$n" casync extract --store="$W/casync/store" "$W/casync/$n.caibx" "$W/out.casync.$n"
  done
  row casync "store + .caibx (du)" "$(du -sb "$W/casync" | cut -f1)" i.casync "$ld"
fi

python3 benches/corpus/report.py "$TSV" "$LOGICAL" "$MODE" "$C" > "$OUT/results-$MODE.md"
cat "$OUT/results-$MODE.md"
if [[ $SENS == 1 ]]; then
  LAYERSTORE_BENCH_DIR="$W" cargo bench --quiet --bench corpus -- "$C" | tee "$OUT/sensitivity-$MODE.md"
fi
rm -rf "$W"
