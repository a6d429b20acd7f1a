//! tract's own execution of an ONNX model: the independent oracle the tests
//! compare the IR and its executors against.

use super::{one_line, FrontendError};
use tract_onnx::prelude::*;

type TTensor = tract_onnx::prelude::Tensor;

fn tract_err(e: impl std::fmt::Display) -> FrontendError {
    FrontendError::Tract(one_line(&e))
}

/// tract's optimised, runnable plan of an ONNX model for fixed input shapes.
pub struct Plan {
    plan: std::sync::Arc<TypedSimplePlan>,
}

impl Plan {
    /// Builds the plan for inputs of exactly `shapes` (batch included).
    pub fn new(bytes: &[u8], shapes: &[Vec<usize>]) -> Result<Self, FrontendError> {
        let onnx = tract_onnx::onnx().with_ignore_value_info(true);
        let mut model = onnx.model_for_read(&mut &bytes[..]).map_err(tract_err)?;
        for (ix, shape) in shapes.iter().enumerate() {
            model
                .set_input_fact(
                    ix,
                    InferenceFact::dt_shape(f32::datum_type(), shape.clone()),
                )
                .map_err(tract_err)?;
        }
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(tract_err)?;
        Ok(Self { plan })
    }

    /// Runs the plan; returns every graph output as an f32 tensor.
    pub fn run(&self, inputs: &[ir::Tensor]) -> Result<Vec<ir::Tensor>, FrontendError> {
        let mut values: TVec<TValue> = tvec!();
        for t in inputs {
            let tt = TTensor::from_shape(&t.shape, &t.data).map_err(tract_err)?;
            values.push(tt.into_tvalue());
        }
        let outputs = self.plan.run(values).map_err(tract_err)?;
        outputs
            .iter()
            .map(|o| {
                let f = o.cast_to::<f32>().map_err(tract_err)?;
                let view = f.to_plain_array_view::<f32>().map_err(tract_err)?;
                Ok(ir::Tensor::new(
                    o.shape().to_vec(),
                    view.iter().copied().collect(),
                )?)
            })
            .collect()
    }
}

/// Runs the ONNX model in `bytes` with tract (optimised plan), one tensor per
/// graph input with the shapes given (any batch), and returns every graph
/// output as an f32 tensor.
pub fn run(bytes: &[u8], inputs: &[ir::Tensor]) -> Result<Vec<ir::Tensor>, FrontendError> {
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape.clone()).collect();
    Plan::new(bytes, &shapes)?.run(inputs)
}
