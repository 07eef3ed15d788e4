//! Helpers below the storage core: the clock, an in-process pipe, crash
//! points for the kill harness and filesystem helpers. Nothing here knows
//! what a store, a layer or an image is.

pub(crate) mod clock;
pub(crate) mod fault;
pub(crate) mod fs;
pub(crate) mod pipe;

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}
