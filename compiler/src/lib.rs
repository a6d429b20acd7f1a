//! The precis compiler: ONNX frontend, rewrite passes, minimax engine, lowering.

pub mod frontend;
pub mod lower;
pub mod minimax;
pub mod passes;
pub mod pipeline;
pub mod precision;
