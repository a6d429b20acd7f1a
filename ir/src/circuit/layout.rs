//! Slot layouts: where each element of a tensor lives in the ciphertexts.
//!
//! A tensor is spread over `cts` ciphertexts of `slots` slots each, seen as
//! one *virtual* slot space of `cts·slots` positions (ciphertext `k` holds
//! positions `k·slots..(k+1)·slots`). Rotations act cyclically inside one
//! ciphertext; a tensor that spans several ciphertexts is shifted across
//! them by linear transforms.
//!
//! * [`Layout::Grid`]: a `C×H×W` tensor, element `(c, i, j)` at virtual
//!   position `base[c] + i·row + j·col (mod cts·slots)`. With `col = G` (the
//!   *gap*) and `row = G·W_f` (a frame of width `W_f`), strided
//!   convolutions and pooling leave their outputs in place at gap `G·s`,
//!   and channels are *multiplexed*: `G²` channels share one `H_f×W_f`
//!   block at sub-positions `(r_i, r_j) ∈ [0, G)²` (Lee et al., ICML 2022;
//!   Orion's single-shot multiplexed packing).
//! * [`Layout::Vector`]: a flat tensor, element `e` at `positions[e]`,
//!   replicated every `period` slots (`period` divides `slots`) when the
//!   tensor fits in one ciphertext; the outputs of fully connected layers
//!   come out replicated, which the next one reads for free.

use serde::{Deserialize, Serialize};

/// Where a tensor's elements live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Layout {
    Grid {
        /// `[C, H, W]` (batch 1 implied).
        shape: [usize; 3],
        /// Virtual position of element `(c, 0, 0)`.
        base: Vec<u64>,
        /// Position step between rows.
        row: u64,
        /// Position step between columns (the gap).
        col: u64,
        cts: usize,
        slots: usize,
    },
    Vector {
        /// The tensor's shape (its element count is `positions.len()`).
        shape: Vec<usize>,
        /// Virtual position of each element.
        positions: Vec<u64>,
        /// Every element is repeated every `period` slots (`period = slots`:
        /// no repetition); `period < slots` only for one ciphertext.
        period: usize,
        cts: usize,
        slots: usize,
    },
}

impl Layout {
    /// A grid with gap `gap` in frames of `frame = [H_f, W_f]`, channels
    /// multiplexed densely: channel `c` in block `c / gap²` at sub-position
    /// `c mod gap²`; the ciphertext count is what the blocks need.
    pub fn dense_grid(shape: [usize; 3], gap: usize, frame: [usize; 2], slots: usize) -> Self {
        let [c, _, _] = shape;
        let per_block = gap * gap;
        let block = frame[0] * frame[1];
        let base = (0..c)
            .map(|ch| {
                let (b, r) = (ch / per_block, ch % per_block);
                (b * block + (r / gap) * frame[1] + r % gap) as u64
            })
            .collect();
        let blocks = c.div_ceil(per_block);
        let cts = (blocks * block).div_ceil(slots).max(1);
        Layout::Grid {
            shape,
            base,
            row: (gap * frame[1]) as u64,
            col: gap as u64,
            cts,
            slots,
        }
    }

    /// A vector of `len` elements at positions `0..len`, repeated every
    /// `period` slots.
    pub fn replicated_vector(shape: Vec<usize>, period: usize, slots: usize) -> Self {
        let len: usize = shape.iter().product();
        Layout::Vector {
            positions: (0..len as u64).collect(),
            shape,
            period,
            cts: 1,
            slots,
        }
    }

    pub fn cts(&self) -> usize {
        match self {
            Layout::Grid { cts, .. } | Layout::Vector { cts, .. } => *cts,
        }
    }

    pub fn slots(&self) -> usize {
        match self {
            Layout::Grid { slots, .. } | Layout::Vector { slots, .. } => *slots,
        }
    }

    /// The tensor shape without the batch axis.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Layout::Grid { shape, .. } => shape.to_vec(),
            Layout::Vector { shape, .. } => shape.clone(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Layout::Grid { shape, .. } => shape.iter().product(),
            Layout::Vector { positions, .. } => positions.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The replication period (`slots` when elements are not repeated).
    pub fn period(&self) -> usize {
        match self {
            Layout::Grid { slots, .. } => *slots,
            Layout::Vector { period, .. } => *period,
        }
    }

    /// Virtual position of element `e` (row-major index; its first copy).
    pub fn position(&self, e: usize) -> u64 {
        match self {
            Layout::Grid {
                shape,
                base,
                row,
                col,
                cts,
                slots,
            } => {
                let hw = shape[1] * shape[2];
                let (c, rest) = (e / hw, e % hw);
                let (i, j) = (rest / shape[2], rest % shape[2]);
                let v = (cts * slots) as u64;
                (base[c] + i as u64 * row + j as u64 * col) % v
            }
            Layout::Vector { positions, .. } => positions[e],
        }
    }

    /// `(ciphertext, slot)` of element `e`'s first copy.
    pub fn slot(&self, e: usize) -> (usize, usize) {
        let p = self.position(e) as usize;
        let n = self.slots();
        (p / n, p % n)
    }

    /// Every `(ciphertext, slot)` holding element `e`.
    pub fn copies(&self, e: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let (ct, s) = self.slot(e);
        let period = self.period();
        let n = self.slots();
        (0..n / period).map(move |k| (ct, s % period + k * period))
    }

    /// Checks that the layout is well formed: sizes, positions inside the
    /// ciphertexts, no two elements at one position, the period a power of
    /// two dividing the slot count.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.slots();
        if !n.is_power_of_two() || n == 0 {
            return Err(format!("slot count {n} is not a power of two"));
        }
        if self.cts() == 0 {
            return Err("no ciphertexts".into());
        }
        let total = self
            .cts()
            .checked_mul(n)
            .ok_or("ciphertext count overflows")?;
        match self {
            Layout::Grid {
                shape,
                base,
                row,
                col,
                ..
            } => {
                if base.len() != shape[0] {
                    return Err(format!(
                        "{} channel bases for {} channels",
                        base.len(),
                        shape[0]
                    ));
                }
                if *row == 0 || *col == 0 {
                    return Err("zero row or column step".into());
                }
                if base.iter().any(|&b| b >= total as u64) {
                    return Err("a channel base lies outside the ciphertexts".into());
                }
                let _ = (row, col);
            }
            Layout::Vector {
                shape,
                positions,
                period,
                cts,
                ..
            } => {
                if shape.iter().product::<usize>() != positions.len() {
                    return Err("vector shape and positions disagree".into());
                }
                if !period.is_power_of_two() || *period > n {
                    return Err(format!("period {period} does not divide {n} slots"));
                }
                if *period < n && *cts != 1 {
                    return Err("a repeated vector must fit in one ciphertext".into());
                }
                let limit = if *period < n { *period } else { total } as u64;
                if positions.iter().any(|&p| p >= limit) {
                    return Err(format!("a position lies outside 0..{limit}"));
                }
            }
        }
        if self.len() > total {
            return Err(format!(
                "{} elements do not fit in {total} slots",
                self.len()
            ));
        }
        let mut seen = vec![false; total];
        for e in 0..self.len() {
            let p = self.position(e) as usize;
            if std::mem::replace(&mut seen[p], true) {
                return Err(format!("two elements share position {p}"));
            }
        }
        Ok(())
    }

    /// Scatters a tensor (row-major, batch 1) into `cts` slot vectors.
    pub fn pack(&self, data: &[f64]) -> Vec<Vec<f64>> {
        assert_eq!(data.len(), self.len(), "tensor size");
        let mut out = vec![vec![0.0; self.slots()]; self.cts()];
        for (e, &v) in data.iter().enumerate() {
            for (ct, s) in self.copies(e) {
                out[ct][s] = v;
            }
        }
        out
    }

    /// Gathers the tensor (row-major) from slot vectors (first copies).
    pub fn unpack(&self, cts: &[Vec<f64>]) -> Vec<f64> {
        (0..self.len())
            .map(|e| {
                let (ct, s) = self.slot(e);
                cts[ct][s]
            })
            .collect()
    }

    /// Which positions of the virtual space hold an element (any copy).
    pub fn occupied(&self) -> Vec<Vec<bool>> {
        let mut out = vec![vec![false; self.slots()]; self.cts()];
        for e in 0..self.len() {
            for (ct, s) in self.copies(e) {
                out[ct][s] = true;
            }
        }
        out
    }

    /// A one-line description for reports and the text form.
    pub fn describe(&self) -> String {
        match self {
            Layout::Grid {
                shape,
                row,
                col,
                cts,
                slots,
                ..
            } => format!(
                "grid {}x{}x{} gap {col} row {row} in {cts}x{slots}",
                shape[0], shape[1], shape[2]
            ),
            Layout::Vector {
                shape,
                period,
                cts,
                slots,
                ..
            } => format!("vector {:?} period {period} in {cts}x{slots}", shape),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_grid_multiplexes_channels() {
        // 8 channels of 4×4 at gap 2 in 8×8 frames: 4 channels per block.
        let l = Layout::dense_grid([8, 4, 4], 2, [8, 8], 128);
        l.validate().unwrap();
        assert_eq!(l.cts(), 1);
        // Channel 3 = block 0, sub-position (1, 1); element (3, 2, 1).
        assert_eq!(l.position(3 * 16 + 2 * 4 + 1), (8 + 1) + 2 * 16 + 2);
        // Channel 5 = block 1, sub-position (0, 1).
        assert_eq!(l.position(5 * 16), 64 + 1);
        let data: Vec<f64> = (0..128).map(|v| v as f64).collect();
        assert_eq!(l.unpack(&l.pack(&data)), data);
    }

    #[test]
    fn spills_into_more_ciphertexts() {
        let l = Layout::dense_grid([5, 4, 4], 1, [4, 4], 32);
        l.validate().unwrap();
        assert_eq!(l.cts(), 3);
        assert_eq!(l.slot(4 * 16 + 5), (2, 5));
    }

    #[test]
    fn replicated_vectors_repeat() {
        let l = Layout::replicated_vector(vec![1, 3], 4, 16);
        l.validate().unwrap();
        let packed = l.pack(&[1.0, 2.0, 3.0]);
        assert_eq!(
            packed[0],
            [1.0, 2.0, 3.0, 0.0].repeat(4),
            "every period holds a copy"
        );
    }

    #[test]
    fn bad_layouts_are_refused() {
        let mut l = Layout::dense_grid([2, 2, 2], 1, [2, 2], 8);
        if let Layout::Grid { base, .. } = &mut l {
            base[1] = 1;
        }
        assert!(l.validate().unwrap_err().contains("share"));
        let v = Layout::Vector {
            shape: vec![2],
            positions: vec![0, 9],
            period: 8,
            cts: 1,
            slots: 8,
        };
        assert!(v.validate().is_err());
    }
}
