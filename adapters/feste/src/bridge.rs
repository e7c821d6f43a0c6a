//! Moving tensors between the suite's named parameter set and Feste's structs.
//!
//! Feste keeps its model's fields private to its crate (`pub(crate)`), so the only
//! public ways in and out of a `TrainableGPT2` are its checkpoint reader and writer.
//! The adapter therefore writes the case's parameters as a FESTE_CKPT file (the format
//! the suite and Feste share, SPEC §checkpoint), loads it with Feste's
//! `Checkpoint::load`, and reads results back from a file written by Feste's
//! `Checkpoint::save`. Gradients and AdamW moments are public structs and are built
//! directly. Orientation needs no mapping: Feste stores every weight `[in, out]`, as
//! the suite does.

use crate::case::{AdapterError, Case};
use feste::gpt2_trainable::{
    AttentionAdamState, AttentionGradients, BlockAdamState, BlockGradients, Checkpoint,
    GPT2Gradients, MLPAdamState, MLPGradients, TrainableGPT2,
};
use feste::{AdamWOptimizer, Config, Tensor};
use std::path::PathBuf;

/// The 16 tensors of a block, in checkpoint order (SPEC §checkpoint).
pub const BLOCK_TENSORS: [&str; 16] = [
    "ln1.gamma", "ln1.beta", "q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias",
    "out.weight", "out.bias", "ln2.gamma", "ln2.beta", "fc1.weight", "fc1.bias", "fc2.weight",
    "fc2.bias",
];

// Feste's per-block structs, `BlockGradients` and `BlockAdamState`, hold a block's 16
// tensors at the same field paths: the two macros below are the one map from
// BLOCK_TENSORS' names to those fields, in each direction, for both structs.

/// A block's tensors in checkpoint order, named: `[(name, &Tensor); 16]` of a
/// `BlockGradients` or a `BlockAdamState`.
macro_rules! block_tensors {
    ($b:expr) => {
        [
            ("ln1.gamma", &$b.ln1_gamma),
            ("ln1.beta", &$b.ln1_beta),
            ("q.weight", &$b.attn.q_weight),
            ("q.bias", &$b.attn.q_bias),
            ("k.weight", &$b.attn.k_weight),
            ("k.bias", &$b.attn.k_bias),
            ("v.weight", &$b.attn.v_weight),
            ("v.bias", &$b.attn.v_bias),
            ("out.weight", &$b.attn.out_weight),
            ("out.bias", &$b.attn.out_bias),
            ("ln2.gamma", &$b.ln2_gamma),
            ("ln2.beta", &$b.ln2_beta),
            ("fc1.weight", &$b.mlp.fc1_weight),
            ("fc1.bias", &$b.mlp.fc1_bias),
            ("fc2.weight", &$b.mlp.fc2_weight),
            ("fc2.bias", &$b.mlp.fc2_bias),
        ]
    };
}

/// A `$block { .., attn: $attn { .. }, mlp: $mlp { .. } }` whose tensors are `$get(name)`
/// (`$get`: a closure of the block tensor's name); `x: $x` fills the `x` fields the
/// gradient structs also have (the gradient passed to the previous layer).
macro_rules! block_from {
    ($block:ident, $attn:ident, $mlp:ident, $get:expr $(, x: $x:expr)?) => {{
        let get = $get;
        $block {
            ln1_gamma: get("ln1.gamma"),
            ln1_beta: get("ln1.beta"),
            attn: $attn {
                q_weight: get("q.weight"),
                q_bias: get("q.bias"),
                k_weight: get("k.weight"),
                k_bias: get("k.bias"),
                v_weight: get("v.weight"),
                v_bias: get("v.bias"),
                out_weight: get("out.weight"),
                out_bias: get("out.bias"),
                $(x: $x,)?
            },
            ln2_gamma: get("ln2.gamma"),
            ln2_beta: get("ln2.beta"),
            mlp: $mlp {
                fc1_weight: get("fc1.weight"),
                fc1_bias: get("fc1.bias"),
                fc2_weight: get("fc2.weight"),
                fc2_bias: get("fc2.bias"),
                $(x: $x,)?
            },
            $(x: $x,)?
        }
    }};
}

/// Every parameter's name and shape, in checkpoint order (the suite's parameter table).
pub fn param_names(c: &Config) -> Vec<(String, Vec<usize>)> {
    let (v, e, t) = (c.vocab_size, c.n_embd, c.block_size);
    let mut out = vec![("token_embedding".to_string(), vec![v, e]), ("position_embedding".to_string(), vec![t, e])];
    for i in 0..c.n_layers {
        for name in BLOCK_TENSORS {
            let shape = match name {
                "q.weight" | "k.weight" | "v.weight" | "out.weight" => vec![e, e],
                "fc1.weight" => vec![e, 4 * e],
                "fc1.bias" => vec![4 * e],
                "fc2.weight" => vec![4 * e, e],
                _ => vec![e],
            };
            out.push((format!("blocks.{i}.{name}"), shape));
        }
    }
    out.push(("ln_final.gamma".to_string(), vec![e]));
    out.push(("ln_final.beta".to_string(), vec![e]));
    out.push(("output_weight".to_string(), vec![e, v]));
    out
}

/// A named tensor set in checkpoint order.
pub type Named = Vec<(String, Vec<usize>, Vec<f32>)>;

/// The case's tensors `in.<prefix>.<param>` for every parameter, in checkpoint order.
pub fn read_set(case: &Case, c: &Config, prefix: &str) -> Result<Named, AdapterError> {
    let mut out = Vec::new();
    for (name, shape) in param_names(c) {
        let key = format!("{prefix}.{name}");
        let (got, values) = case.input_f32(&key)?;
        if got != shape {
            return Err(AdapterError(format!("in.{key} has shape {got:?}, the config implies {shape:?}")));
        }
        out.push((name, shape, values));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// FESTE_CKPT bytes, as far as the adapter needs them to move tensors.

fn put_tensor(out: &mut Vec<u8>, shape: &[usize], values: &[f32]) {
    out.extend_from_slice(&(shape.len() as u32).to_le_bytes());
    for &d in shape {
        out.extend_from_slice(&(d as u32).to_le_bytes());
    }
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// An inference checkpoint holding `params`, its config JSON written by Feste's own
/// `Config` serializer. The metadata's best_val_loss is a finite 0.0: Feste writes +inf
/// as `null` but cannot read `null` back (a difference the checkpoint cases show), and
/// this file only carries tensors into Feste.
pub fn params_file_bytes(c: &Config, params: &Named) -> Vec<u8> {
    let mut out = b"FESTE_CKPT\x01".to_vec();
    let cfg = serde_json::to_string(c).expect("Config serializes");
    out.extend_from_slice(&(cfg.len() as u32).to_le_bytes());
    out.extend_from_slice(cfg.as_bytes());
    for (i, (_, shape, values)) in params.iter().enumerate() {
        if i == 2 {
            out.extend_from_slice(&(c.n_layers as u32).to_le_bytes());
        }
        put_tensor(&mut out, shape, values);
    }
    out.push(0); // no optimizer
    out.push(0); // no tokenizer
    let meta = br#"{"step":0,"best_val_loss":0.0,"best_val_step":0}"#;
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(meta);
    out
}

/// A scratch directory for one request, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Result<Scratch, AdapterError> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "feste-adapter-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| AdapterError(format!("{}: {e}", dir.display())))?;
        Ok(Scratch(dir))
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Feste's training model holding `params` (through Feste's checkpoint reader).
pub fn model_from_params(c: &Config, params: &Named) -> Result<TrainableGPT2, AdapterError> {
    let scratch = Scratch::new()?;
    let path = scratch.path("params.bin");
    std::fs::write(&path, params_file_bytes(c, params))?;
    let ck = Checkpoint::load(&path.to_string_lossy())
        .map_err(|e| AdapterError(format!("Feste did not load the parameters the adapter wrote: {e}")))?;
    Ok(ck.model)
}

/// The config and parameters of a FESTE_CKPT file written by Feste.
pub struct Parsed {
    pub config_json: String,
    pub params: Named,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AdapterError> {
        if self.b.len() - self.at < n {
            return Err(AdapterError(format!("file Feste wrote ends at {} (wanted {n} more bytes)", self.at)));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, AdapterError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, AdapterError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn tensor(&mut self) -> Result<(Vec<usize>, Vec<f32>), AdapterError> {
        let nd = self.u32()? as usize;
        let shape = (0..nd).map(|_| self.u32().map(|d| d as usize)).collect::<Result<Vec<_>, _>>()?;
        let n = self.u32()? as usize;
        let raw = self.take(n.checked_mul(4).ok_or_else(|| AdapterError("tensor too large".into()))?)?;
        Ok((shape, raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()))
    }
    fn blob(&mut self) -> Result<Vec<u8>, AdapterError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

/// Parse the config and parameters of a file Feste's `Checkpoint::save` wrote (trusted:
/// no validation beyond bounds; the optimizer, tokenizer and metadata Feste holds are
/// read from its public fields instead).
pub fn parse_checkpoint(bytes: &[u8]) -> Result<Parsed, AdapterError> {
    let mut r = Reader { b: bytes, at: 0 };
    if r.take(11)? != b"FESTE_CKPT\x01" {
        return Err(AdapterError("Feste's file does not start with FESTE_CKPT v1".into()));
    }
    let config_json = String::from_utf8(r.blob()?)?;
    let mut c: Config = serde_json::from_str(&config_json)?;
    // the blocks Feste holds (and wrote) are named by its block count, not the config's
    let tok = r.tensor()?;
    let pos = r.tensor()?;
    c.n_layers = r.u32()? as usize;
    let table = param_names(&c);
    let mut params = vec![
        (table[0].0.clone(), tok.0, tok.1),
        (table[1].0.clone(), pos.0, pos.1),
    ];
    for (name, _) in &table[2..] {
        let (shape, values) = r.tensor()?;
        params.push((name.clone(), shape, values));
    }
    Ok(Parsed { config_json, params })
}

/// Save through Feste's `Checkpoint::save` into the scratch directory and return the bytes.
pub fn save_with_feste(ck: &Checkpoint, scratch: &Scratch, name: &str) -> Result<Vec<u8>, AdapterError> {
    let path = scratch.path(name);
    ck.save(&path.to_string_lossy()).map_err(|e| AdapterError(format!("Feste's Checkpoint::save: {e}")))?;
    Ok(std::fs::read(&path)?)
}

/// The parameters a Feste model holds now (written by Feste, parsed by the adapter).
pub fn params_of(model: TrainableGPT2) -> Result<(Named, TrainableGPT2), AdapterError> {
    let scratch = Scratch::new()?;
    let ck = Checkpoint::inference_only(model);
    let bytes = save_with_feste(&ck, &scratch, "model.bin")?;
    Ok((parse_checkpoint(&bytes)?.params, ck.model))
}

// ---------------------------------------------------------------------------
// Gradients and AdamW state: public structs, built and read directly.

fn t(shape: &[usize], values: &[f32]) -> Tensor {
    Tensor::new(values.to_vec(), shape.to_vec())
}

/// Feste's gradient struct from a named set in checkpoint order. The `x` fields
/// (gradients passed to the previous layer) play no part in norm, clipping or AdamW.
pub fn gradients_from(c: &Config, g: &Named) -> GPT2Gradients {
    let get = |name: &str| {
        let (_, s, v) = g.iter().find(|(n, _, _)| n == name).expect("named gradient");
        t(s, v)
    };
    let dummy = || Tensor::new(vec![0.0], vec![1, 1]);
    let block_grads = (0..c.n_layers)
        .map(|i| {
            let b = |s: &str| get(&format!("blocks.{i}.{s}"));
            block_from!(BlockGradients, AttentionGradients, MLPGradients, b, x: dummy())
        })
        .collect();
    GPT2Gradients {
        token_embedding: get("token_embedding"),
        position_embedding: get("position_embedding"),
        block_grads,
        ln_final_gamma: get("ln_final.gamma"),
        ln_final_beta: get("ln_final.beta"),
        output_weight: get("output_weight"),
    }
}

/// A named set in checkpoint order from the tensors of one of Feste's structs: the
/// embeddings, the first `c.n_layers` blocks (`block_tensors!`), the final LayerNorm and
/// the output projection.
fn named_set<'a>(
    c: &Config,
    embeddings: [&Tensor; 2],
    blocks: impl Iterator<Item = [(&'static str, &'a Tensor); 16]>,
    last: [&Tensor; 3],
) -> Named {
    let mut out: Named = Vec::new();
    let mut push = |name: String, x: &Tensor| out.push((name, x.shape.clone(), x.data.clone()));
    for (name, x) in ["token_embedding", "position_embedding"].into_iter().zip(embeddings) {
        push(name.into(), x);
    }
    for (i, tensors) in blocks.enumerate().take(c.n_layers) {
        for (name, x) in tensors {
            push(format!("blocks.{i}.{name}"), x);
        }
    }
    for (name, x) in ["ln_final.gamma", "ln_final.beta", "output_weight"].into_iter().zip(last) {
        push(name.into(), x);
    }
    out
}

/// The tensors of Feste's gradient struct, named, in checkpoint order.
pub fn gradients_named(c: &Config, g: &GPT2Gradients) -> Named {
    named_set(
        c,
        [&g.token_embedding, &g.position_embedding],
        g.block_grads.iter().map(|b| block_tensors!(b)),
        [&g.ln_final_gamma, &g.ln_final_beta, &g.output_weight],
    )
}

fn block_state(set: &Named, i: usize) -> BlockAdamState {
    let get = |s: &str| {
        let name = format!("blocks.{i}.{s}");
        let (_, sh, v) = set.iter().find(|(n, _, _)| *n == name).expect("named moment");
        t(sh, v)
    };
    block_from!(BlockAdamState, AttentionAdamState, MLPAdamState, get)
}

/// Feste's AdamW state from named moments and its hyperparameters.
pub fn optimizer_from(c: &Config, m: &Named, v: &Named, step: usize, beta1: f32, beta2: f32, eps: f32) -> AdamWOptimizer {
    let get = |set: &Named, name: &str| {
        let (_, s, x) = set.iter().find(|(n, _, _)| n == name).expect("named moment");
        t(s, x)
    };
    AdamWOptimizer {
        m_token_embedding: get(m, "token_embedding"),
        m_position_embedding: get(m, "position_embedding"),
        m_block_states: (0..c.n_layers).map(|i| block_state(m, i)).collect(),
        m_ln_final_gamma: get(m, "ln_final.gamma"),
        m_ln_final_beta: get(m, "ln_final.beta"),
        m_output_weight: get(m, "output_weight"),
        v_token_embedding: get(v, "token_embedding"),
        v_position_embedding: get(v, "position_embedding"),
        v_block_states: (0..c.n_layers).map(|i| block_state(v, i)).collect(),
        v_ln_final_gamma: get(v, "ln_final.gamma"),
        v_ln_final_beta: get(v, "ln_final.beta"),
        v_output_weight: get(v, "output_weight"),
        beta1,
        beta2,
        epsilon: eps,
        step,
    }
}

/// The moments of Feste's AdamW state, named, in checkpoint order: (m, v).
pub fn optimizer_named(c: &Config, o: &AdamWOptimizer) -> (Named, Named) {
    (
        named_set(
            c,
            [&o.m_token_embedding, &o.m_position_embedding],
            o.m_block_states.iter().map(|b| block_tensors!(b)),
            [&o.m_ln_final_gamma, &o.m_ln_final_beta, &o.m_output_weight],
        ),
        named_set(
            c,
            [&o.v_token_embedding, &o.v_position_embedding],
            o.v_block_states.iter().map(|b| block_tensors!(b)),
            [&o.v_ln_final_gamma, &o.v_ln_final_beta, &o.v_output_weight],
        ),
    )
}

/// Which of Feste's JSON reads refused a file that `Checkpoint::load` rejected with
/// `InvalidData` (its error names no section): the file is walked in Feste's own reading
/// order (a flag counts as set only when it is 1, as Feste reads it) and each JSON
/// section is given to the Feste type that reads it.
pub fn failing_json_section(bytes: &[u8]) -> Option<&'static str> {
    let mut r = Reader { b: bytes, at: 11 };
    let config = r.blob().ok()?;
    let c: Config = match std::str::from_utf8(&config).ok().and_then(|s| serde_json::from_str(s).ok()) {
        Some(c) => c,
        None => return Some("config"),
    };
    let tensors_before_blocks = 2;
    for _ in 0..tensors_before_blocks {
        r.tensor().ok()?;
    }
    let n_blocks = r.u32().ok()? as usize;
    for _ in 0..n_blocks * BLOCK_TENSORS.len() + 3 {
        r.tensor().ok()?;
    }
    if r.u8().ok()? == 1 {
        r.take(20).ok()?;
        for _ in 0..(4 + n_blocks * 32 + 6) {
            r.tensor().ok()?;
        }
    }
    let _ = c;
    if r.u8().ok()? == 1 {
        let tok = r.blob().ok()?;
        let ok = std::str::from_utf8(&tok)
            .ok()
            .map(|s| serde_json::from_str::<feste::BPETokenizer>(s).is_ok())
            .unwrap_or(false);
        if !ok {
            return Some("tokenizer");
        }
    }
    Some("metadata")
}
