//! Content-defined chunking parameters and cut-point search (FastCDC 2020).
//!
//! The `fastcdc` crate is pinned to an exact version because its cut points
//! are part of the store's on-disk contract: if they moved, identical data put
//! before and after an upgrade would stop deduplicating. The parameters a store
//! was created with are recorded in its index and used for every later put.

use fastcdc::v2020::{Normalization, cut, select_masks};

use crate::error::{Error, Result};

/// FastCDC sizes in bytes. Powers of two; `min < avg < max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChunkParams {
    /// Smallest chunk the chunker cuts (shorter only at the end of a payload).
    pub min_size: u32,
    /// Target average chunk size.
    pub avg_size: u32,
    /// Largest chunk.
    pub max_size: u32,
}

impl Default for ChunkParams {
    /// 16 KiB / 64 KiB / 256 KiB, as in the design.
    fn default() -> Self {
        ChunkParams {
            min_size: 16 << 10,
            avg_size: 64 << 10,
            max_size: 256 << 10,
        }
    }
}

impl ChunkParams {
    /// Checks the limits FastCDC 2020 accepts and that sizes are ordered.
    pub fn validate(&self) -> Result<()> {
        let (min, avg, max) = (self.min_size, self.avg_size, self.max_size);
        let ok = (64..=1 << 20).contains(&min)
            && (256..=4 << 20).contains(&avg)
            && (1024..=16 << 20).contains(&max)
            && min < avg
            && avg < max
            && min.is_power_of_two()
            && avg.is_power_of_two()
            && max.is_power_of_two();
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(
                "chunk parameters",
                format!(
                    "min/avg/max {min}/{avg}/{max} must be powers of two with min < avg < max, \
                     min in 64..=1MiB, avg in 256..=4MiB, max in 1KiB..=16MiB"
                ),
            ))
        }
    }
}

/// A configured cut-point finder.
#[derive(Clone, Debug)]
pub struct Cdc {
    params: ChunkParams,
    mask_s: u64,
    mask_l: u64,
}

impl Cdc {
    /// Prepares the masks for `params` (which must be valid).
    pub fn new(params: ChunkParams) -> Self {
        let (mask_s, mask_l) = select_masks(params.avg_size as usize, Normalization::Level1);
        Cdc {
            params,
            mask_s,
            mask_l,
        }
    }

    /// The parameters.
    pub fn params(&self) -> ChunkParams {
        self.params
    }

    /// Largest chunk, as usize.
    pub fn max_size(&self) -> usize {
        self.params.max_size as usize
    }

    /// Length of the first chunk of `data`. `data` must hold either at least
    /// `max_size` bytes or everything up to the end of the stream being cut,
    /// so that the answer does not depend on how the input was buffered.
    pub fn first_chunk_len(&self, data: &[u8]) -> usize {
        if data.is_empty() {
            return 0;
        }
        let (_, len) = cut(
            data,
            self.params.min_size as usize,
            self.params.avg_size as usize,
            self.params.max_size as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        len.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_is_independent_of_trailing_buffer() {
        let cdc = Cdc::new(ChunkParams::default());
        let data: Vec<u8> = (0..1_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let first = cdc.first_chunk_len(&data[..cdc.max_size()]);
        assert_eq!(first, cdc.first_chunk_len(&data));
        assert!((16 << 10..=256 << 10).contains(&first));
        // Default parameters validate; nonsense does not.
        ChunkParams::default().validate().unwrap();
        assert!(
            ChunkParams {
                min_size: 100,
                avg_size: 50,
                max_size: 10
            }
            .validate()
            .is_err()
        );
    }
}
