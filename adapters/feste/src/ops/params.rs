//! params/table: what Feste's model holds, measured from Feste itself.

use crate::bridge::{self, param_names};
use crate::case::{Case, OpResult, Outputs, Reply};
use crate::safetensors::Tensor;
use feste::gpt2_trainable::TrainableGPT2;
use feste::{adamw_update, AdamWOptimizer, Config};

/// `init.<name>` codes as SPEC numbers them: 0 zeros, 1 ones, 2 normal; and 3, which SPEC does not
/// have, for a tensor Feste draws from something else (its `random_init` is a uniform
/// LCG draw), so a drawn tensor is never reported as normal.
const INIT_ZEROS: u8 = 0;
const INIT_ONES: u8 = 1;
const INIT_OTHER_DRAW: u8 = 3;

/// Shapes, init kinds and `n_params` from `TrainableGPT2::new(config)`; `std.<name>` is
/// the standard deviation of the values Feste drew (0 for constant tensors); `decayed.<name>`
/// is measured by one `adamw_update` with zero gradients and moments, lr 0.5 and weight
/// decay 1 on parameters of 1.0: a decayed parameter comes back as 0.5, any other as 1.0.
pub fn table(case: &Case) -> OpResult {
    let c = case.config()?;
    let model = TrainableGPT2::new(&c);
    let n = model.num_parameters();
    let (drawn, _) = bridge::params_of(model)?;
    let mut out = Outputs::new();
    out.tensor("n_params", Tensor::i64(vec![], vec![n as i64]));
    for (name, shape, values) in &drawn {
        out.tensor(&format!("shape.{name}"), Tensor::i64(vec![shape.len()], shape.iter().map(|&d| d as i64).collect()));
        let init = if values.iter().all(|&x| x == 0.0) {
            INIT_ZEROS
        } else if values.iter().all(|&x| x == 1.0) {
            INIT_ONES
        } else {
            INIT_OTHER_DRAW
        };
        out.tensor(&format!("init.{name}"), Tensor::u8(vec![], vec![init]));
        let std = if init == INIT_OTHER_DRAW {
            let k = values.len() as f64;
            let mean = values.iter().map(|&x| x as f64).sum::<f64>() / k;
            (values.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / k).sqrt()
        } else {
            0.0
        };
        out.tensor(&format!("std.{name}"), Tensor::scalar_f64(std));
    }
    // The decay mask, as Feste's AdamW applies it. Feste decides decay per parameter
    // (a literal in adamw_update for each field), not per size, so it is measured on the
    // same structure at the smallest sizes: a checkpoint round trip of the full model
    // costs Feste one write(2) per value (minutes for the medium preset).
    let c = Config { vocab_size: 1, n_embd: 1, block_size: 1, ..c.clone() };
    let ones: bridge::Named = param_names(&c).into_iter().map(|(n, s)| {
        let k = s.iter().product();
        (n, s, vec![1.0f32; k])
    }).collect();
    let zeros: bridge::Named = ones.iter().map(|(n, s, v)| (n.clone(), s.clone(), vec![0.0f32; v.len()])).collect();
    let mut model = bridge::model_from_params(&c, &ones)?;
    let grads = bridge::gradients_from(&c, &zeros);
    let mut opt: AdamWOptimizer = bridge::optimizer_from(&c, &zeros, &zeros, 0, 0.9, 0.95, 1e-8);
    adamw_update(&mut model, &grads, &mut opt, 0.5, 1.0);
    let (after, _) = bridge::params_of(model)?;
    for (name, _, values) in &after {
        out.tensor(&format!("decayed.{name}"), Tensor::u8(vec![], vec![(values[0] != 1.0) as u8]));
    }
    Ok(Reply::Ok(out))
}

/// Feste has an init (`TrainableGPT2::new`) but it takes no seed: every tensor is drawn
/// by `random_init` from a fixed seed of its own (12345, 23456, 10000 * (layer + 1), ...).
pub fn init(_case: &Case) -> OpResult {
    crate::case::skipped(
        "Feste's init (TrainableGPT2::new) takes no seed: random_init draws uniform values from fixed LCG seeds, \
         so the case's seeded NumPy draws cannot be asked for",
    )
}
