#!/usr/bin/env python3
"""Synthetic layer corpus for the layerstore storage benchmark (no network).

Deterministic (fixed seed; same bytes on every run and machine) and small, for
quick runs and CI-sized checks. It produces the same shapes as the real
corpus (build_real.sh):

  base          rootfs-like: ELF-ish binaries (random bytes with zero runs and
                repeated tables, ~2x compressible) and text (word soup, ~4x)
  base-rebuilt  case (a): same content as base, every mtime changed
  app-v1        an application layer: many small source files and a few libs
  app-v2        case (b): app-v1 rebuilt: 3 files edited, 1 replaced by a new
                version, 1 added, 1 removed; every mtime changed
  app2          a second app on the same base (case (c): images share base)

Usage: gen_synthetic.py OUTDIR [SCALE]   (SCALE multiplies sizes, default 1:
about 48 MiB of base and 100 MiB of tars in all). Writes NAME.tar and
NAME.tar.gz (gzip -6, mtime 0), MANIFEST, IMAGES and BUILD_SECONDS.
"""
import gzip, io, os, random, shutil, sys, tarfile, time

WORDS = ("the of and to in is for on that with as by this be are from it or an at "
         "int char void return static struct const unsigned if else while config "
         "error value buffer size len data path file name type self def import "
         "class none true false module function object string list dict").split()


def text(rng, n):
    out, size = [], 0
    while size < n:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) + "\n"
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def binary(rng, n):
    table = rng.randbytes(4096)
    parts, size = [], 0
    while size < n:
        k = rng.random()
        if k < 0.45:
            p = rng.randbytes(rng.randint(256, 8192))
        elif k < 0.7:
            p = bytes(rng.randint(64, 4096))
        elif k < 0.85:
            p = table[: rng.randint(512, 4096)]
        else:
            p = text(rng, rng.randint(200, 3000))
        parts.append(p)
        size += len(p)
    return b"".join(parts)[:n]


def tree(seed, nbin, ntext, binmax, textmax, prefix):
    rng = random.Random(seed)
    files = {}
    for i in range(nbin):
        files[f"{prefix}/bin/prog{i:04d}"] = binary(rng, rng.randint(2048, binmax))
    for i in range(ntext):
        d = rng.randint(0, 40)
        files[f"{prefix}/share/d{d:02d}/f{i:05d}.txt"] = text(rng, rng.randint(100, textmax))
    return files


def write(out, name, files, mtime):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        dirs = set()
        for path in sorted(files):
            parts = path.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    ti = tarfile.TarInfo(d)
                    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, mtime
                    tf.addfile(ti)
            ti = tarfile.TarInfo(path)
            ti.size, ti.mode, ti.mtime = len(files[path]), 0o644, mtime
            tf.addfile(ti, io.BytesIO(files[path]))
    data = buf.getvalue()
    with open(os.path.join(out, name + ".tar"), "wb") as f:
        f.write(data)
    with open(os.path.join(out, name + ".tar.gz"), "wb") as f:
        f.write(gzip.compress(data, compresslevel=6, mtime=0))


def main():
    out = sys.argv[1]
    scale = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    start = time.time()
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    t1, t2 = 1_700_000_000, 1_710_000_000
    base = tree(1, int(120 * scale), int(1500 * scale), 600_000, 20_000, "usr")
    write(out, "base", base, t1)
    write(out, "base-rebuilt", base, t2)  # (a)
    app = tree(2, int(12 * scale), int(2500 * scale), 900_000, 12_000, "app")
    write(out, "app-v1", app, t1)
    rng = random.Random(3)
    app2 = dict(app)
    keys = sorted(app2)
    for k in rng.sample([k for k in keys if k.endswith(".txt")], 3):  # edits
        b = bytearray(app2[k])
        pos = rng.randrange(len(b))
        b[pos:pos] = b"patched line\n"
        app2[k] = bytes(b)
    lib = [k for k in keys if "/bin/" in k][0]  # a lib replaced by a new version
    app2[lib] = binary(rng, len(app2[lib]))
    app2["app/share/d00/new-module.txt"] = text(rng, 8000)
    del app2[[k for k in keys if k.endswith(".txt")][-1]]
    write(out, "app-v2", app2, t2)  # (b)
    write(out, "app2", tree(4, int(20 * scale), int(800 * scale), 500_000, 10_000, "opt"), t1)
    with open(os.path.join(out, "MANIFEST"), "w") as f:
        f.write("base\nbase-rebuilt\napp-v1\napp-v2\napp2\n")
    with open(os.path.join(out, "IMAGES"), "w") as f:
        f.write("app-v1 base app-v1\napp-v2 base-rebuilt app-v2\napp2 base app2\n")
    with open(os.path.join(out, "BUILD_SECONDS"), "w") as f:
        f.write(f"{time.time() - start:.1f}\n")


if __name__ == "__main__":
    main()
