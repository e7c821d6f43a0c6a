//! tokenizer/*: Feste's `BPETokenizer` (train, encode, decode, JSON save and load).

use super::to_usize;
use crate::bridge::Scratch;
use crate::case::{error, skipped, AdapterError, Case, OpResult, Outputs, Reply};
use feste::BPETokenizer;
use serde_json::Value;
use std::path::Path;

/// Feste's text API takes `&str`: a case whose text is not UTF-8 cannot be given to it.
fn text_of(case: &Case) -> Result<Result<String, String>, AdapterError> {
    let bytes = std::fs::read(case.file("text")?)?;
    Ok(String::from_utf8(bytes).map_err(|e| {
        format!(
            "Feste's tokenizer takes text as &str and this case's text is not UTF-8 \
             (invalid byte at offset {}); SPEC §tokenizer accepts bytes",
            e.utf8_error().valid_up_to()
        )
    }))
}

/// A tokenizer file read by Feste's `BPETokenizer::load`; its refusal is `tokenizer.invalid-json`.
fn load_tokenizer(path: &Path) -> Result<Result<BPETokenizer, String>, AdapterError> {
    if !path.exists() {
        return Err(AdapterError(format!("{} does not exist", path.display())));
    }
    Ok(BPETokenizer::load(path).map_err(|e| e.to_string()))
}

/// The bytes Feste's `save` writes (its only tokenizer JSON writer).
pub fn saved_json(tok: &BPETokenizer) -> Result<Vec<u8>, AdapterError> {
    let scratch = Scratch::new()?;
    let p = scratch.path("tokenizer.json");
    tok.save(&p).map_err(|e| AdapterError(format!("Feste's BPETokenizer::save: {e}")))?;
    Ok(std::fs::read(&p)?)
}

/// Feste's merges as id pairs: its merges are string pairs, its vocab maps strings to ids
/// (both private fields; read through its serde form).
fn merge_ids(tok: &BPETokenizer) -> Result<Vec<i64>, AdapterError> {
    let v = serde_json::to_value(tok)?;
    let vocab = v["vocab"].as_object().ok_or_else(|| AdapterError("Feste's tokenizer has no vocab map".into()))?;
    let id = |s: &Value| -> Result<i64, AdapterError> {
        let s = s.as_str().ok_or_else(|| AdapterError("a merge part is not a string".into()))?;
        vocab.get(s).and_then(Value::as_i64).ok_or_else(|| AdapterError(format!("merge part {s} not in Feste's vocab")))
    };
    let mut out = Vec::new();
    for pair in v["merges"].as_array().ok_or_else(|| AdapterError("Feste's tokenizer has no merges".into()))? {
        out.push(id(&pair[0])?);
        out.push(id(&pair[1])?);
    }
    Ok(out)
}

/// `BPETokenizer::new(vocab_size).train(text, vocab_size)`; merges and Feste's saved JSON.
pub fn train(case: &Case) -> OpResult {
    let text = match text_of(case)? {
        Ok(t) => t,
        Err(reason) => return skipped(reason),
    };
    let vocab_size = case.arg_usize("vocab_size")?;
    let mut tok = BPETokenizer::new(vocab_size);
    tok.train(&text, vocab_size);
    let merges = merge_ids(&tok)?;
    let mut out = Outputs::new();
    out.ids("merges", vec![merges.len() / 2, 2], merges);
    out.file("tokenizer.json", saved_json(&tok)?);
    Ok(Reply::Ok(out))
}

pub fn encode(case: &Case) -> OpResult {
    let tok = match load_tokenizer(&case.file("tokenizer")?)? {
        Ok(t) => t,
        Err(e) => return error("tokenizer.invalid-json", e),
    };
    let text = match text_of(case)? {
        Ok(t) => t,
        Err(reason) => return skipped(reason),
    };
    let ids: Vec<i64> = tok.encode(&text).into_iter().map(|x| x as i64).collect();
    let mut out = Outputs::new();
    out.ids("ids", vec![ids.len()], ids);
    Ok(Reply::Ok(out))
}

/// Feste's `decode` returns a `String` (invalid UTF-8 replaced by U+FFFD; it has no
/// byte-exact decode): its UTF-8 bytes are the output.
pub fn decode(case: &Case) -> OpResult {
    let tok = match load_tokenizer(&case.file("tokenizer")?)? {
        Ok(t) => t,
        Err(e) => return error("tokenizer.invalid-json", e),
    };
    let (_, ids) = case.input_ids("ids")?;
    let ids = match to_usize(&ids) {
        Some(v) => v,
        None => return skipped("a negative id cannot be passed to Feste's decode(&[usize])"),
    };
    let mut out = Outputs::new();
    out.file("text.bin", tok.decode(&ids).into_bytes());
    Ok(Reply::Ok(out))
}

/// `BPETokenizer::load` then `save`.
pub fn load(case: &Case) -> OpResult {
    match load_tokenizer(&case.file("tokenizer")?)? {
        Ok(tok) => {
            let mut out = Outputs::new();
            out.file("tokenizer.json", saved_json(&tok)?);
            Ok(Reply::Ok(out))
        }
        Err(e) => error("tokenizer.invalid-json", e),
    }
}
