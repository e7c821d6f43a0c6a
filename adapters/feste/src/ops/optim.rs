//! optim/*: Feste's `compute_grad_norm`, `clip_gradients` and `adamw_update`.

use crate::bridge;
use crate::case::{Case, OpResult, Outputs, Reply};
use crate::safetensors::Tensor;
use feste::{adamw_update, clip_gradients, compute_grad_norm};

/// `compute_grad_norm` (it returns f32; widened to the F64 the case asks for).
pub fn grad_norm(case: &Case) -> OpResult {
    let c = case.config()?;
    let g = bridge::gradients_from(&c, &bridge::read_set(case, &c, "grad")?);
    let mut out = Outputs::new();
    out.tensor("norm", Tensor::scalar_f32(compute_grad_norm(&g)));
    Ok(Reply::Ok(out))
}

/// `clip_gradients(grads, max_norm)` returns nothing: the pre-clip norm is Feste's
/// `compute_grad_norm` of the same gradients, which `clip_gradients` computes first.
pub fn clip(case: &Case) -> OpResult {
    let c = case.config()?;
    let mut g = bridge::gradients_from(&c, &bridge::read_set(case, &c, "grad")?);
    let norm = compute_grad_norm(&g);
    clip_gradients(&mut g, case.arg_f64("max_norm")? as f32);
    let mut out = Outputs::new();
    out.tensor("norm", Tensor::scalar_f32(norm));
    for (name, shape, values) in bridge::gradients_named(&c, &g) {
        out.f32(&format!("grad.{name}"), shape, values);
    }
    Ok(Reply::Ok(out))
}

/// One `adamw_update(model, grads, optimizer, lr, weight_decay)`; the hyperparameters are
/// Feste's f32 fields, the case's values rounded to f32 once.
pub fn adamw(case: &Case) -> OpResult {
    let c = case.config()?;
    let params = bridge::read_set(case, &c, "param")?;
    let grads = bridge::gradients_from(&c, &bridge::read_set(case, &c, "grad")?);
    let (m, v) = (bridge::read_set(case, &c, "m")?, bridge::read_set(case, &c, "v")?);
    let mut model = bridge::model_from_params(&c, &params)?;
    let mut opt = bridge::optimizer_from(
        &c,
        &m,
        &v,
        case.arg_usize("step")?,
        case.arg_f64("beta1")? as f32,
        case.arg_f64("beta2")? as f32,
        case.arg_f64("eps")? as f32,
    );
    adamw_update(&mut model, &grads, &mut opt, case.arg_f64("lr")? as f32, case.arg_f64("weight_decay")? as f32);
    let (after, _) = bridge::params_of(model)?;
    let (m, v) = bridge::optimizer_named(&c, &opt);
    let mut out = Outputs::new();
    for (prefix, set) in [("param", after), ("m", m), ("v", v)] {
        for (name, shape, values) in set {
            out.f32(&format!("{prefix}.{name}"), shape, values);
        }
    }
    out.tensor("step", Tensor::i64(vec![], vec![opt.step as i64]));
    Ok(Reply::Ok(out))
}
