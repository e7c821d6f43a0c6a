//! One vector case (SPEC §case-json): its case.json, its input tensors and files,
//! and the outputs an operation writes back (SPEC §adapter-protocol).

use crate::safetensors::{self, Data, Tensor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// What an operation answers: outputs, a typed error code, or a skip with its reason.
pub enum Reply {
    Ok(Outputs),
    Error { code: String, message: String },
    Skipped(String),
}

/// A failure of the adapter itself (an unreadable case, a missing input): reported as an
/// `error` reply with a code outside SPEC §error-codes, so the runner shows it and never counts it
/// as Feste's answer.
#[derive(Debug)]
pub struct AdapterError(pub String);

impl<T: std::fmt::Display> From<T> for AdapterError {
    fn from(e: T) -> Self {
        AdapterError(e.to_string())
    }
}

pub type OpResult = Result<Reply, AdapterError>;

pub fn error(code: &str, message: impl Into<String>) -> OpResult {
    Ok(Reply::Error { code: code.to_string(), message: message.into() })
}

pub fn skipped(reason: impl Into<String>) -> OpResult {
    Ok(Reply::Skipped(reason.into()))
}

pub struct Case {
    pub dir: PathBuf,
    pub json: Value,
    tensors: BTreeMap<String, Tensor>,
}

impl Case {
    pub fn load(dir: &Path) -> Result<Case, AdapterError> {
        let path = dir.join("case.json");
        let text = fs::read(&path).map_err(|e| AdapterError(format!("{}: {e}", path.display())))?;
        let json: Value = serde_json::from_slice(&text)
            .map_err(|e| AdapterError(format!("{}: {e}", path.display())))?;
        let data = dir.join("data.safetensors");
        let tensors = if data.exists() { safetensors::read(&data).map_err(AdapterError)? } else { BTreeMap::new() };
        Ok(Case { dir: dir.to_path_buf(), json, tensors })
    }

    pub fn operation(&self) -> String {
        format!(
            "{}/{}",
            self.json["component"].as_str().unwrap_or(""),
            self.json["operation"].as_str().unwrap_or("")
        )
    }

    pub fn dtype(&self) -> &str {
        self.json["dtype"].as_str().unwrap_or("float32")
    }

    pub fn arg(&self, name: &str) -> &Value {
        &self.json["args"][name]
    }

    pub fn arg_f64(&self, name: &str) -> Result<f64, AdapterError> {
        self.arg(name).as_f64().ok_or_else(|| AdapterError(format!("args.{name} is not a number")))
    }

    pub fn arg_usize(&self, name: &str) -> Result<usize, AdapterError> {
        self.arg(name)
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| AdapterError(format!("args.{name} is not a non-negative integer")))
    }

    /// The case's model config as Feste's `Config` (same fields, same order).
    pub fn config(&self) -> Result<feste::Config, AdapterError> {
        let c = &self.json["config"];
        if !c.is_object() {
            return Err(AdapterError("case has no config".into()));
        }
        let field = |k: &str| {
            c[k].as_u64().map(|v| v as usize).ok_or_else(|| AdapterError(format!("config.{k} is not an integer")))
        };
        Ok(feste::Config {
            vocab_size: field("vocab_size")?,
            n_embd: field("n_embd")?,
            n_heads: field("n_heads")?,
            n_layers: field("n_layers")?,
            block_size: field("block_size")?,
            dropout_rate: c["dropout_rate"]
                .as_f64()
                .ok_or_else(|| AdapterError("config.dropout_rate is not a number".into()))?
                as f32,
        })
    }

    pub fn has_input(&self, name: &str) -> bool {
        self.tensors.contains_key(&format!("in.{name}"))
    }

    pub fn input(&self, name: &str) -> Result<&Tensor, AdapterError> {
        self.tensors
            .get(&format!("in.{name}"))
            .ok_or_else(|| AdapterError(format!("data.safetensors has no tensor in.{name}")))
    }

    pub fn input_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), AdapterError> {
        let t = self.input(name)?;
        Ok((t.shape.clone(), t.as_f32(name).map_err(AdapterError)?))
    }

    pub fn input_ids(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>), AdapterError> {
        let t = self.input(name)?;
        Ok((t.shape.clone(), t.as_i64(name).map_err(AdapterError)?))
    }

    /// The path of an input raw file by its role (`text`, `tokenizer`, `checkpoint`).
    pub fn file(&self, role: &str) -> Result<PathBuf, AdapterError> {
        let name = self.json["files"][role]
            .as_str()
            .ok_or_else(|| AdapterError(format!("case has no file with role {role}")))?;
        Ok(self.dir.join(name))
    }

    pub fn has_file(&self, role: &str) -> bool {
        self.json["files"][role].is_string()
    }

    /// The expected safetensors dtype of output `name`, when the case compares it.
    pub fn expected_dtype(&self, name: &str) -> Option<&str> {
        self.json["expect"]["outputs"][name]["dtype"].as_str()
    }
}

/// Outputs of one operation: tensors (`out.<name>`) and raw files.
pub struct Outputs {
    tensors: BTreeMap<String, Tensor>,
    files: BTreeMap<String, Vec<u8>>,
}

impl Outputs {
    pub fn new() -> Outputs {
        Outputs { tensors: BTreeMap::new(), files: BTreeMap::new() }
    }

    pub fn tensor(&mut self, name: &str, t: Tensor) {
        self.tensors.insert(format!("out.{name}"), t);
    }

    pub fn f32(&mut self, name: &str, shape: Vec<usize>, values: Vec<f32>) {
        self.tensor(name, Tensor::f32(shape, values));
    }

    pub fn ids(&mut self, name: &str, shape: Vec<usize>, values: Vec<i64>) {
        self.tensor(name, Tensor::i64(shape, values));
    }

    pub fn file(&mut self, name: &str, bytes: Vec<u8>) {
        self.files.insert(name.to_string(), bytes);
    }

    /// Float outputs the case expects as F64 while Feste computed them in f32 are widened
    /// (losslessly); nothing is ever narrowed.
    pub fn widen_for(&mut self, case: &Case) {
        for (key, t) in self.tensors.iter_mut() {
            let name = &key["out.".len()..];
            if case.expected_dtype(name) == Some("F64") {
                if let Data::F32(v) = &t.data {
                    t.data = Data::F64(v.iter().map(|&x| x as f64).collect());
                }
            }
        }
    }

    pub fn write(&self, out: &Path) -> Result<(), AdapterError> {
        fs::create_dir_all(out).map_err(|e| AdapterError(format!("{}: {e}", out.display())))?;
        if !self.tensors.is_empty() {
            safetensors::write(&out.join("outputs.safetensors"), &self.tensors).map_err(AdapterError)?;
        }
        for (name, bytes) in &self.files {
            let p = out.join(name);
            fs::write(&p, bytes).map_err(|e| AdapterError(format!("{}: {e}", p.display())))?;
        }
        Ok(())
    }
}
