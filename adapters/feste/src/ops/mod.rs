//! The operations served (SPEC §operations), one module per component, each a call
//! into Feste's public API. An operation Feste has no public counterpart for is not
//! listed here, so the runner reports its cases as unsupported.

mod checkpoint;
mod data;
mod layers;
mod logger;
mod model;
mod optim;
mod params;
mod tokenizer;

use crate::case::{Case, OpResult};
use serde_json::{json, Value};

/// The version in the Cargo.toml of the Feste built against (build.sh sets it).
pub const FESTE_VERSION: &str = match option_env!("FESTE_VERSION") {
    Some(v) => v,
    None => "unknown (not built by build.sh)",
};

pub type Handler = fn(&Case) -> OpResult;

/// `<component>/<operation>` -> handler, in SPEC §operations's order.
pub const OPERATIONS: &[(&str, Handler)] = &[
    ("params/table", params::table),
    ("params/init", params::init),
    ("tokenizer/train", tokenizer::train),
    ("tokenizer/encode", tokenizer::encode),
    ("tokenizer/decode", tokenizer::decode),
    ("tokenizer/load", tokenizer::load),
    ("data/split", data::split),
    ("data/sequential", data::sequential),
    ("layers/layernorm", layers::layernorm),
    ("layers/linear", layers::linear),
    ("layers/attention", layers::attention),
    ("layers/gelu", layers::gelu),
    ("loss/cross-entropy", model::cross_entropy),
    ("model/forward", model::forward),
    ("model/backward", model::backward),
    ("model/baseline", model::forward),
    ("optim/grad-norm", optim::grad_norm),
    ("optim/clip", optim::clip),
    ("optim/adamw", optim::adamw),
    ("checkpoint/write", checkpoint::write),
    ("checkpoint/read", checkpoint::read),
    ("logger/header", logger::header),
    ("logger/row", logger::row),
    ("generate/sample", model::sample),
    ("train/step-gradient", model::step_gradient),
    ("train/trajectory", model::trajectory),
];

pub fn handler(op: &str) -> Option<Handler> {
    OPERATIONS.iter().find(|(name, _)| *name == op).map(|(_, h)| *h)
}

/// The optional timing request (SPEC §adapter-protocol item 3): Feste's training steps on a preset cell.
pub fn time(id: Value, req: &Value) -> Value {
    let cell = &req["cell"];
    let (preset, b, t) = (cell["preset"].as_str(), cell["batch"].as_u64(), cell["seq_len"].as_u64());
    let (steps, warmup) = (req["steps"].as_u64(), req["warmup"].as_u64().unwrap_or(0));
    match (preset, b, t, steps) {
        (Some(p), Some(b), Some(t), Some(k)) => {
            match model::time_steps(p, b as usize, t as usize, k as usize, warmup as usize) {
                Ok(seconds) => json!({"type": "timing", "id": id, "seconds": seconds}),
                Err(reason) => json!({"type": "skipped", "id": id, "reason": reason}),
            }
        }
        _ => json!({"type": "skipped", "id": id, "reason": "time needs cell.preset, cell.batch, cell.seq_len and steps"}),
    }
}

/// Token ids as Feste's `usize`; `None` when one is negative (not representable in Feste's API).
pub fn to_usize(ids: &[i64]) -> Option<Vec<usize>> {
    ids.iter().map(|&x| usize::try_from(x).ok()).collect()
}
