//! Deterministic content: the one seeded generator (SplitMix64) and the
//! byte generators built on it, so every failure reproduces from its seed.

/// SplitMix64: small, fast and deterministic.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        self.next_u64() % n
    }

    /// In `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// The next `len` incompressible bytes of this generator.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.fill(&mut out);
        out
    }
}

/// `n` incompressible bytes.
pub fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    Rng::new(seed).bytes(n)
}

/// `n` bytes of word soup: compresses like text (zstd makes real frames of
/// it), but has no long repeats.
pub fn text_bytes(seed: u64, n: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "layer",
        "store",
        "chunk",
        "pack",
        "digest",
        "sha256",
        "tar",
        "header",
        "payload",
        "the",
        "of",
        "and",
        "container",
        "image",
        "registry",
        "blob",
        "gzip",
        "zstd",
        "index",
        "recipe",
        "frame",
        "offset",
        "sparse",
        "hardlink",
        "symlink",
        "directory",
        "fifo",
        "ü",
        "名前",
        "0",
        "1",
        "42",
        "\n",
        "\t",
        "{",
        "}",
        "=",
        ";",
    ];
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        out.extend_from_slice(rng.pick(WORDS).as_bytes());
        out.push(if rng.below(9) == 0 { b'\n' } else { b' ' });
    }
    out.truncate(n);
    out
}

/// `n` bytes mixing repeated 4 KiB blocks, zero runs and random runs.
pub fn partly_repetitive(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let motifs: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(seed ^ (i + 1), 4096)).collect();
    let mut out = Vec::with_capacity(n + 70_000);
    while out.len() < n {
        match rng.below(4) {
            0 => {
                let m = &motifs[rng.below(4) as usize];
                for _ in 0..1 + rng.below(8) {
                    out.extend_from_slice(m);
                }
            }
            1 => out.resize(out.len() + 1 + rng.below(20_000) as usize, 0),
            2 => out.extend_from_slice(&text_bytes(rng.next_u64(), 1 + rng.below(30_000) as usize)),
            _ => out.extend_from_slice(&random_bytes(
                rng.next_u64(),
                1 + rng.below(60_000) as usize,
            )),
        }
    }
    out.truncate(n);
    out
}

/// Random or text content, chosen by the seed.
pub fn mixed_bytes(seed: u64, n: usize) -> Vec<u8> {
    if seed.is_multiple_of(3) {
        text_bytes(seed, n)
    } else {
        random_bytes(seed, n)
    }
}
