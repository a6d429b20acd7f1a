//! The precis compiler: ONNX frontend, rewrite passes, minimax engine, lowering.

pub mod frontend;
