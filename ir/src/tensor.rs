//! Dense f32 tensors (row-major) as carried by the IR: weights, constants and
//! reference-executor values.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A tensor shape; for activations the leading axis is the batch (1 in the IR).
pub type Shape = Vec<usize>;

/// Number of elements of a shape; `usize::MAX` when the product overflows
/// (shapes come from files: such a shape then matches no data).
pub fn numel(shape: &[usize]) -> usize {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .unwrap_or(usize::MAX)
}

/// A dense, row-major f32 tensor.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    pub shape: Shape,
    pub data: Vec<f32>,
}

impl Tensor {
    /// Builds a tensor, checking that `data` has exactly `numel(shape)` elements.
    pub fn new(shape: Shape, data: Vec<f32>) -> Result<Self, crate::IrError> {
        if numel(&shape) != data.len() {
            return Err(crate::IrError::TensorSize {
                shape,
                len: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    pub fn zeros(shape: Shape) -> Self {
        let n = numel(&shape);
        Self {
            shape,
            data: vec![0.0; n],
        }
    }

    pub fn scalar(v: f32) -> Self {
        Self {
            shape: vec![],
            data: vec![v],
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// A short content digest (FNV-1a over the shape and the f32 bit patterns),
    /// identical on every machine; the text form prints it so snapshots notice
    /// any change of weights without printing them.
    pub fn digest(&self) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        let mut eat = |b: u8| {
            h ^= b as u32;
            h = h.wrapping_mul(0x0100_0193);
        };
        for &d in &self.shape {
            for b in (d as u64).to_le_bytes() {
                eat(b);
            }
        }
        for v in &self.data {
            for b in v.to_bits().to_le_bytes() {
                eat(b);
            }
        }
        h
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{:08x}", ShapeFmt(&self.shape), self.digest())
    }
}

/// Displays a shape as `f32[1,3,32,32]`.
pub struct ShapeFmt<'a>(pub &'a [usize]);

impl fmt::Display for ShapeFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "f32[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_size() {
        assert!(Tensor::new(vec![2, 3], vec![0.0; 6]).is_ok());
        assert!(Tensor::new(vec![2, 3], vec![0.0; 5]).is_err());
    }

    #[test]
    fn digest_depends_on_shape_and_data() {
        let a = Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let b = Tensor::new(vec![4], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let c = Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.5]).unwrap();
        assert_ne!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
        assert_eq!(a.digest(), a.clone().digest());
    }
}
