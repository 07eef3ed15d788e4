//! Tar header recognition: just enough of ustar, GNU, v7 and PAX to learn
//! where each member's payload starts and ends.
//!
//! Nothing here rewrites bytes: the splitter keeps every header, PAX record,
//! padding and trailer verbatim. A block that does not look like a valid
//! header (bad checksum, malformed number) makes the splitter fall back to
//! plain chunking, which is always byte-exact. Every function is total: any
//! input gives an answer, never a panic.

/// Size of a tar block.
pub const BLOCK: usize = 512;

/// PAX records larger than this are kept verbatim without being parsed.
pub const MAX_PARSED_PAX: u64 = 1 << 20;

/// What a valid header block says about the bytes that follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    /// The type flag byte (`b'0'`, `b'x'`, `b'L'`, ...).
    pub typeflag: u8,
    /// The size field, decoded (octal or base-256).
    pub size: u64,
    /// Old GNU sparse header (`S`) whose map continues in extension blocks.
    pub gnu_sparse_extended: bool,
}

/// Is `block` all zero bytes (an end-of-archive marker)?
pub fn is_zero_block(block: &[u8]) -> bool {
    block.iter().all(|&b| b == 0)
}

/// Parses a 512-byte header block; `None` if it is not a plausible header.
pub fn parse_header(block: &[u8]) -> Option<HeaderInfo> {
    if block.len() < BLOCK || is_zero_block(&block[..BLOCK]) {
        return None;
    }
    let stored = parse_octal(&block[148..156])?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block[..BLOCK].iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
        return None;
    }
    let typeflag = block[156];
    let size = parse_numeric(&block[124..136])?;
    let gnu_sparse_extended = typeflag == b'S' && block[482] != 0;
    Some(HeaderInfo {
        typeflag,
        size,
        gnu_sparse_extended,
    })
}

/// Does an old GNU sparse extension block say another one follows?
pub fn sparse_extension_continues(block: &[u8]) -> bool {
    block.len() >= BLOCK && block[504] != 0
}

/// Types whose headers carry no payload even when the size field is set
/// (links, devices, directories, fifos), as most readers treat them.
pub fn is_header_only(typeflag: u8) -> bool {
    matches!(typeflag, b'1'..=b'6')
}

/// Types whose payload is metadata for the next member (kept inline).
pub fn is_meta(typeflag: u8) -> bool {
    matches!(typeflag, b'x' | b'g' | b'L' | b'K' | b'X')
}

/// Bytes of padding after a payload of `len` bytes.
pub fn padding(len: u64) -> u64 {
    (BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64
}

/// Decodes a numeric field: octal (optionally space/NUL padded) or GNU
/// base-256 (high bit set). Negative or overflowing values are rejected.
pub fn parse_numeric(field: &[u8]) -> Option<u64> {
    match field.first() {
        Some(&first) if first & 0x80 != 0 => {
            if first & 0x40 != 0 {
                return None; // negative base-256
            }
            let mut value = u64::from(first & 0x3f);
            for &b in &field[1..] {
                value = value.checked_mul(256)?.checked_add(u64::from(b))?;
            }
            Some(value)
        }
        _ => parse_octal(field),
    }
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let mut rest = field;
    while let [b' ' | 0, tail @ ..] = rest {
        rest = tail;
    }
    let mut value: u64 = 0;
    let mut digits = 0;
    for &b in rest {
        match b {
            b'0'..=b'7' => {
                value = value.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
                digits += 1;
            }
            b' ' | 0 => break,
            _ => return None,
        }
    }
    // An all-blank field reads as zero; trailing garbage after the terminator is ignored.
    let _ = digits;
    Some(value)
}

/// Looks for a `size=` record in PAX extended header data. Malformed
/// records make the whole set unusable (the caller then keeps the header's
/// own size, and falls back to plain chunking if that turns out wrong).
pub fn pax_size(records: &[u8]) -> Option<u64> {
    let mut rest = records;
    let mut found = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space + 1 || len > rest.len() {
            return None;
        }
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(value) = record.strip_prefix(b"size=") {
            found = std::str::from_utf8(value).ok()?.parse().ok();
        }
        rest = &rest[len..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(size_field: &[u8; 12], typeflag: u8) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..4].copy_from_slice(b"file");
        h[124..136].copy_from_slice(size_field);
        h[156] = typeflag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(text.as_bytes());
        h
    }

    #[test]
    fn parses_octal_and_base256_sizes() {
        let h = header(b"00000001750\0", b'0');
        assert_eq!(parse_header(&h).unwrap().size, 1000);
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[4..12].copy_from_slice(&(1u64 << 40).to_be_bytes());
        let h = header(&big, b'0');
        assert_eq!(parse_header(&h).unwrap().size, 1 << 40);
        let mut neg = [0xffu8; 12];
        neg[11] = 0xfe;
        assert_eq!(parse_header(&header(&neg, b'0')), None);
        let mut overflow = [0x81u8; 12];
        overflow[0] = 0xbf;
        assert_eq!(parse_numeric(&overflow), None);
    }

    #[test]
    fn rejects_bad_checksum_and_zero_block() {
        let mut h = header(b"00000000000\0", b'0');
        h[0] ^= 1;
        assert_eq!(parse_header(&h), None);
        assert_eq!(parse_header(&[0u8; 512]), None);
        assert_eq!(parse_header(&[1u8; 100]), None);
    }

    #[test]
    fn pax_size_record() {
        assert_eq!(pax_size(b"13 size=1234\n"), Some(1234));
        assert_eq!(pax_size(b"20 path=a/b/c/d/e/f\n13 size=99999\n"), None);
        assert_eq!(pax_size(b"20 path=a/b/c/d/e/f\n13 size=9999\n"), Some(9999));
        assert_eq!(pax_size(b"99999999999999999999999 x"), None);
        assert_eq!(pax_size(b"3 \n"), None);
        assert_eq!(pax_size(b""), None);
    }
}
