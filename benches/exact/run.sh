#!/usr/bin/env bash
# Exact compressed blobs, per producer: which method `put --exact-now` chooses, the
# extra bytes it keeps (% of the blob), put and rebuild (get) speed in MB of
# tar per second, peak RSS, and `gzip -6` / `gzip -d` of the same tar in the
# same run for scale. Not run by CI.
#
#   benches/exact/run.sh [TAR]   (default: a tar of /usr/lib/python3 and /usr/share/doc;
#                                 zstd -19 alone takes minutes on a few hundred MB)
#
# Needs gzip, pigz, zstd, python3, go (golang-go) and GNU time.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q
bin=$PWD/target/release/layerstore
work=${LAYERSTORE_BENCH_WORK:-$PWD/target/exact-bench}
rm -rf "$work"
mkdir -p "$work"
tar_file=${1:-$work/input.tar}
if [ ! -f "$tar_file" ]; then
    tar -cf "$tar_file" -C / usr/lib/python3 usr/share/doc 2>/dev/null || true
fi
tar_bytes=$(stat -c %s "$tar_file")

cat >"$work/gogzip.go" <<'EOF'
package main

import (
	"compress/gzip"
	"io"
	"os"
	"strconv"
)

func main() {
	level, _ := strconv.Atoi(os.Args[1])
	w, _ := gzip.NewWriterLevel(os.Stdout, level)
	io.Copy(w, os.Stdin)
	w.Close()
}
EOF
(cd "$work" && GO111MODULE=off GOCACHE="$work/gocache" go build -o gogzip gogzip.go)

mbps() { python3 -c "print(f'{$1 / 1e6 / max($2, 0.001):.0f}')"; }
timed() { # timed OUT CMD...: wall seconds and peak RSS (KiB) into OUT
    /usr/bin/time -f "%e %M" -o "$1" "${@:2}"
}

timed "$work/t" gzip -6 -c -n "$tar_file" >/dev/null
read -r gz_s _ <"$work/t"
timed "$work/t" sh -c "gzip -6 -c -n '$tar_file' | gzip -dc >/dev/null"
echo "input: $tar_file, $tar_bytes bytes; gzip -6 of it: ${gz_s} s ($(mbps "$tar_bytes" "$gz_s") MB/s)"
echo
echo "| producer | method | extra % of blob | put MB/s | put peak RSS | get MB/s | get/gzip -6 | get peak RSS |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"

row() { # row NAME BLOB
    local name=$1 blob=$2 store="$work/store-$RANDOM"
    timed "$work/t" "$bin" --store "$store" put --exact-now --json "$blob" >"$work/put.json"
    read -r put_s put_kb <"$work/t"
    local digest method extra
    digest=sha256:$(sha256sum "$blob" | cut -d' ' -f1)
    method=$(python3 -c "import json;print(json.load(open('$work/put.json'))['blob_method'])")
    extra=$(python3 -c "import json,os;d=json.load(open('$work/put.json'));print(f\"{100*d['blob_extra_bytes']/os.path.getsize('$blob'):.3f}\")")
    timed "$work/t" "$bin" --store "$store" get "$digest" -o "$work/back"
    read -r get_s get_kb <"$work/t"
    cmp "$work/back" "$blob"
    echo "| $name | $method | $extra | $(mbps "$tar_bytes" "$put_s") | $((put_kb / 1024)) MiB | $(mbps "$tar_bytes" "$get_s") | $(python3 -c "print(f'{$gz_s / max($get_s, 0.001):.2f}x')") | $((get_kb / 1024)) MiB |"
    rm -rf "$store" "$work/back"
}

for level in 1 6 9; do
    gzip -"$level" -c -n "$tar_file" >"$work/b"
    row "GNU gzip -$level" "$work/b"
done
pigz -6 -c "$tar_file" >"$work/b"
row "pigz -6" "$work/b"
python3 -c "import gzip,sys; sys.stdout.buffer.write(gzip.compress(open('$tar_file','rb').read(), 6))" >"$work/b"
row "Python gzip 6" "$work/b"
for level in -1 1; do
    "$work/gogzip" "$level" <"$tar_file" >"$work/b"
    row "Go compress/gzip $level" "$work/b"
done
for level in 1 3 19; do
    zstd -q -c -"$level" "$tar_file" >"$work/b"
    row "zstd -$level" "$work/b"
done
rm -rf "$work"
