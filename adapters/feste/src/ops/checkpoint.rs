//! checkpoint/*: Feste's `Checkpoint::save` and `Checkpoint::load`.

use super::tokenizer::saved_json;
use crate::bridge::{self, Scratch};
use crate::case::{error, AdapterError, Case, OpResult, Outputs, Reply};
use crate::safetensors::Tensor;
use feste::gpt2_trainable::Checkpoint;
use feste::{BPETokenizer, Config};
use std::io::ErrorKind;

/// A `Checkpoint` of the case's state, written by `Checkpoint::save`.
pub fn write(case: &Case) -> OpResult {
    let c = case.config()?;
    let params = bridge::read_set(case, &c, "param")?;
    let model = bridge::model_from_params(&c, &params)?;
    let opt = case.arg("optimizer");
    let optimizer = if opt.is_null() {
        None
    } else {
        let num = |k: &str| opt[k].as_f64().ok_or_else(|| AdapterError(format!("args.optimizer.{k} is not a number")));
        Some(bridge::optimizer_from(
            &c,
            &bridge::read_set(case, &c, "m")?,
            &bridge::read_set(case, &c, "v")?,
            num("step")? as usize,
            num("beta1")? as f32,
            num("beta2")? as f32,
            num("eps")? as f32,
        ))
    };
    let tokenizer = if case.has_file("tokenizer") {
        match BPETokenizer::load(case.file("tokenizer")?) {
            Ok(t) => Some(t),
            Err(e) => return error("tokenizer.invalid-json", e.to_string()),
        }
    } else {
        None
    };
    let meta = case.arg("metadata");
    let int = |k: &str| meta[k].as_u64().map(|v| v as usize).ok_or_else(|| AdapterError(format!("args.metadata.{k}")));
    let ck = Checkpoint {
        model,
        optimizer,
        tokenizer,
        step: int("step")?,
        best_val_loss: meta["best_val_loss"].as_f64().map(|x| x as f32).unwrap_or(f32::INFINITY),
        best_val_step: int("best_val_step")?,
    };
    let scratch = Scratch::new()?;
    let bytes = bridge::save_with_feste(&ck, &scratch, "checkpoint.bin")?;
    let mut out = Outputs::new();
    out.file("checkpoint.bin", bytes);
    Ok(Reply::Ok(out))
}

/// Feste's `Checkpoint::load` errors are `std::io::Error`s; the adapter translates them
/// into SPEC §error-codes codes by kind and by the two messages Feste writes itself.
fn code_of(e: &std::io::Error, bytes: &[u8]) -> Option<&'static str> {
    let msg = e.to_string();
    if msg.contains("Invalid checkpoint header") {
        return Some("checkpoint.bad-magic");
    }
    if msg.contains("Unsupported checkpoint version") {
        return Some("checkpoint.bad-version");
    }
    match e.kind() {
        ErrorKind::UnexpectedEof => Some("checkpoint.truncated"),
        ErrorKind::InvalidData => match bridge::failing_json_section(bytes) {
            Some("config") => Some("checkpoint.bad-config"),
            Some("tokenizer") => Some("checkpoint.bad-tokenizer"),
            Some(_) => Some("checkpoint.bad-metadata"),
            None => None,
        },
        _ => None,
    }
}

/// `Checkpoint::load`; what it holds is read back through `Checkpoint::save` (the model's
/// fields are private to Feste) and its public fields.
pub fn read(case: &Case) -> OpResult {
    let path = case.file("checkpoint")?;
    let ck = match Checkpoint::load(&path.to_string_lossy()) {
        Ok(ck) => ck,
        Err(e) => {
            let bytes = std::fs::read(&path)?;
            return match code_of(&e, &bytes) {
                Some(code) => error(code, format!("Feste: {e}")),
                None => Err(AdapterError(format!("Feste's Checkpoint::load failed with an error the adapter cannot type: {e}"))),
            };
        }
    };
    let scratch = Scratch::new()?;
    let parsed = bridge::parse_checkpoint(&bridge::save_with_feste(&ck, &scratch, "again.bin")?)?;
    let c: Config = serde_json::from_str(&parsed.config_json)?;
    let mut out = Outputs::new();
    out.tensor(
        "config",
        Tensor::i64(vec![5], [c.vocab_size, c.n_embd, c.n_heads, c.n_layers, c.block_size].iter().map(|&x| x as i64).collect()),
    );
    out.tensor("dropout_rate", Tensor::scalar_f32(c.dropout_rate));
    for (name, shape, values) in parsed.params {
        out.f32(&format!("param.{name}"), shape, values);
    }
    if let Some(opt) = &ck.optimizer {
        let n_blocks = opt.m_block_states.len();
        let shape_c = Config { n_layers: n_blocks, ..c.clone() };
        let (m, v) = bridge::optimizer_named(&shape_c, opt);
        for (prefix, set) in [("m", m), ("v", v)] {
            for (name, shape, values) in set {
                out.f32(&format!("{prefix}.{name}"), shape, values);
            }
        }
        out.tensor("optimizer_step", Tensor::i64(vec![], vec![opt.step as i64]));
        out.f32("optimizer_hyper", vec![3], vec![opt.beta1, opt.beta2, opt.epsilon]);
    }
    out.tensor("metadata_step", Tensor::i64(vec![], vec![ck.step as i64]));
    out.tensor("best_val_step", Tensor::i64(vec![], vec![ck.best_val_step as i64]));
    out.tensor("best_val_loss", Tensor::scalar_f32(ck.best_val_loss));
    if let Some(tok) = &ck.tokenizer {
        out.file("tokenizer.json", saved_json(tok)?);
    }
    Ok(Reply::Ok(out))
}
