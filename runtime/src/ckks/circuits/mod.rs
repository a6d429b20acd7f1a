//! Higher-level circuits.
