//! loss/cross-entropy, model/*, train/trajectory: Feste's `TrainableGPT2` (forward,
//! compute_loss, backward, with `clip_gradients` and `adamw_update` for training steps)
//! and, for multi-head configs, its forward-only `GPT2`.
//!
//! Feste's models take one sequence (`forward(&[usize])`); a batch of B rows is run
//! row by row. The batch loss is Feste's `compute_loss` over all B*T positions, and the
//! batch gradient follows Feste's own gradient accumulation (train_gpt2's
//! `add_gradients` then `scale_gradients(1/B)`): the rows' gradients, each already
//! divided by T, summed in f32 from zero and multiplied by the f32 `1/B`.

use super::to_usize;
use crate::bridge::{self, Named};
use crate::case::{skipped, AdapterError, Case, OpResult, Outputs, Reply};
use feste::gpt2_trainable::{GPT2Gradients, TrainableGPT2};
use feste::model::{Attention, Block, Embedding, LayerNorm, Linear, MLP};
use feste::{adamw_update, clip_gradients, AdamWOptimizer, Config, Tensor, GPT2};

const SINGLE_HEAD: &str = "Feste's trainable model (TrainableGPT2) has single-head attention whatever n_heads says; \
                           its multi-head model (model::GPT2) has no backward";

fn dropout_key_reason(case: &Case) -> Option<String> {
    if case.arg("dropout").is_null() {
        None
    } else {
        Some("Feste's dropout masks come from rand::random (an unseeded thread RNG), not SPEC §dropout's masks keyed \
              by (seed, step, layer, site, element)"
            .into())
    }
}

/// A TrainableGPT2 whose forward on n zero tokens leaves the identity matrix `[n, n]` as
/// the input of its final LayerNorm (no blocks, zero token embedding, identity position
/// embedding), so its backward's output-weight gradient `x^T @ dlogits` is Feste's
/// `dlogits` exactly. Only `vocab_size` matters to `compute_loss`.
fn loss_probe(v: usize, n: usize) -> Result<(TrainableGPT2, Config), AdapterError> {
    let c = Config { vocab_size: v, n_embd: n, n_heads: 1, n_layers: 0, block_size: n, dropout_rate: 0.0 };
    let mut eye = vec![0.0f32; n * n];
    for i in 0..n {
        eye[i * n + i] = 1.0;
    }
    let params: Named = bridge::param_names(&c)
        .into_iter()
        .map(|(name, shape)| {
            let k: usize = shape.iter().product();
            let values = match name.as_str() {
                "position_embedding" => eye.clone(),
                "ln_final.gamma" => vec![1.0; k],
                _ => vec![0.0; k],
            };
            (name, shape, values)
        })
        .collect();
    Ok((bridge::model_from_params(&c, &params)?, c))
}

/// `compute_loss` and the dlogits of `backward`, on the case's logits `[.., V]`.
pub fn cross_entropy(case: &Case) -> OpResult {
    let (shape, logits) = case.input_f32("logits")?;
    let (_, targets) = case.input_ids("targets")?;
    let targets = match to_usize(&targets) {
        Some(t) => t,
        None => return skipped("a negative target cannot be passed to Feste's &[usize] API"),
    };
    let v = *shape.last().unwrap();
    let n = targets.len();
    let logits = Tensor::new(logits, vec![n, v]);
    if case.expected_dtype("dlogits").is_none() {
        // only the loss is compared (2^14 positions in loss/cross-entropy/exact-mean): compute_loss reads
        // nothing but vocab_size, and the [n, n] identity of the gradient probe would take 1 GiB and minutes
        let (probe, _) = loss_probe(v, 1)?;
        let mut out = Outputs::new();
        out.tensor("loss", crate::safetensors::Tensor::scalar_f32(probe.compute_loss(&logits, &targets)));
        return Ok(Reply::Ok(out));
    }
    let (probe, _) = loss_probe(v, n)?;
    let loss = probe.compute_loss(&logits, &targets);
    let (_, cache) = probe.forward(&vec![0; n]);
    let grads = probe.backward(&logits, &targets, &cache);
    let mut out = Outputs::new();
    out.tensor("loss", crate::safetensors::Tensor::scalar_f32(loss));
    out.f32("dlogits", shape, grads.output_weight.data);
    Ok(Reply::Ok(out))
}

struct Batch {
    b: usize,
    t: usize,
    tokens: Vec<usize>,
    targets: Option<Vec<usize>>,
}

fn batch(case: &Case) -> Result<Result<Batch, String>, AdapterError> {
    let (shape, tok) = case.input_ids("tokens")?;
    let tokens = match to_usize(&tok) {
        Some(t) => t,
        None => return Ok(Err("a negative token id cannot be passed to Feste's &[usize] API".into())),
    };
    let targets = if case.has_input("targets") {
        match to_usize(&case.input_ids("targets")?.1) {
            Some(t) => Some(t),
            None => return Ok(Err("a negative target cannot be passed to Feste's &[usize] API".into())),
        }
    } else {
        None
    };
    Ok(Ok(Batch { b: shape[0], t: shape[1], tokens, targets }))
}

/// Feste's inference model (`model::GPT2`, multi-head, forward only) holding the case's
/// parameters. Its attention fuses q, k, v into one `c_attn` `[C, 3C]` (columns q | k | v)
/// and its `lm_head` has a bias, here zero.
fn inference_model(c: &Config, p: &Named) -> GPT2 {
    let get = |name: &str| {
        let (_, s, v) = p.iter().find(|(n, _, _)| n == name).expect("named parameter");
        Tensor::new(v.clone(), s.clone())
    };
    let e = c.n_embd;
    let blocks = (0..c.n_layers)
        .map(|i| {
            let b = |s: &str| get(&format!("blocks.{i}.{s}"));
            let (qw, kw, vw) = (b("q.weight"), b("k.weight"), b("v.weight"));
            let mut w = Vec::with_capacity(3 * e * e);
            for r in 0..e {
                for m in [&qw, &kw, &vw] {
                    w.extend_from_slice(&m.data[r * e..(r + 1) * e]);
                }
            }
            let bias: Vec<f32> = [b("q.bias"), b("k.bias"), b("v.bias")].iter().flat_map(|t| t.data.clone()).collect();
            Block {
                ln_1: LayerNorm { gamma: b("ln1.gamma"), beta: b("ln1.beta"), eps: 1e-5 },
                attn: Attention {
                    c_attn: Linear { weight: Tensor::new(w, vec![e, 3 * e]), bias: Tensor::new(bias, vec![3 * e]) },
                    c_proj: Linear { weight: b("out.weight"), bias: b("out.bias") },
                    n_heads: c.n_heads,
                    head_dim: e / c.n_heads,
                },
                ln_2: LayerNorm { gamma: b("ln2.gamma"), beta: b("ln2.beta"), eps: 1e-5 },
                mlp: MLP {
                    c_fc: Linear { weight: b("fc1.weight"), bias: b("fc1.bias") },
                    c_proj: Linear { weight: b("fc2.weight"), bias: b("fc2.bias") },
                },
            }
        })
        .collect();
    GPT2 {
        config: c.clone(),
        token_embedding: Embedding { weight: get("token_embedding") },
        position_embedding: Embedding { weight: get("position_embedding") },
        blocks,
        ln_f: LayerNorm { gamma: get("ln_final.gamma"), beta: get("ln_final.beta"), eps: 1e-5 },
        lm_head: Linear { weight: get("output_weight"), bias: Tensor::new(vec![0.0; c.vocab_size], vec![c.vocab_size]) },
    }
}

/// model/forward and model/baseline: with n_heads = 1 Feste's training model
/// (`TrainableGPT2::forward` per row), otherwise its multi-head inference model
/// (`GPT2::forward` on the batch); the loss is `TrainableGPT2::compute_loss`.
pub fn forward(case: &Case) -> OpResult {
    if let Some(r) = dropout_key_reason(case) {
        return skipped(r);
    }
    let c = case.config()?;
    let p = bridge::read_set(case, &c, "param")?;
    let bt = match batch(case)? {
        Ok(b) => b,
        Err(r) => return skipped(r),
    };
    let v = c.vocab_size;
    let (logits, loss_model) = if c.n_heads == 1 {
        let model = bridge::model_from_params(&c, &p)?;
        let mut logits = Vec::with_capacity(bt.b * bt.t * v);
        for row in bt.tokens.chunks(bt.t) {
            logits.extend_from_slice(&model.forward(row).0.data);
        }
        (logits, model)
    } else {
        let model = inference_model(&c, &p);
        let rows: Vec<Vec<usize>> = bt.tokens.chunks(bt.t).map(|r| r.to_vec()).collect();
        (model.forward(&rows).data, loss_probe(v, 1)?.0)
    };
    let mut out = Outputs::new();
    if let Some(targets) = &bt.targets {
        let loss = loss_model.compute_loss(&Tensor::new(logits.clone(), vec![bt.b * bt.t, v]), targets);
        out.tensor("loss", crate::safetensors::Tensor::scalar_f32(loss));
    }
    out.f32("logits", vec![bt.b, bt.t, v], logits);
    Ok(Reply::Ok(out))
}

/// The case's config and Feste's training model holding its parameters (`in.param.*`), or
/// why that model cannot run the case (dropout keyed by SPEC §dropout, more than one head).
fn training_model(case: &Case) -> Result<Result<(Config, TrainableGPT2), String>, AdapterError> {
    if let Some(r) = dropout_key_reason(case) {
        return Ok(Err(r));
    }
    let c = case.config()?;
    if c.n_heads != 1 {
        return Ok(Err(format!("n_heads = {}: {SINGLE_HEAD}", c.n_heads)));
    }
    let p = bridge::read_set(case, &c, "param")?;
    let model = bridge::model_from_params(&c, &p)?;
    Ok(Ok((c, model)))
}

/// The batch loss and every parameter's gradient (`grad.<name>`, checkpoint order) into `out`.
fn put_loss_and_grads(out: &mut Outputs, c: &Config, loss: f32, grads: &GPT2Gradients) {
    out.tensor("loss", crate::safetensors::Tensor::scalar_f32(loss));
    for (name, shape, values) in bridge::gradients_named(c, grads) {
        out.f32(&format!("grad.{name}"), shape, values);
    }
}

/// The case's inputs `in.x` (with its shape) and targets `in.y` as Feste's ids, or why they
/// cannot be passed (a negative id).
fn inputs_and_targets(case: &Case) -> Result<Result<(Vec<usize>, Vec<usize>, Vec<usize>), String>, AdapterError> {
    let (shape, x) = case.input_ids("x")?;
    let (_, y) = case.input_ids("y")?;
    Ok(match (to_usize(&x), to_usize(&y)) {
        (Some(x), Some(y)) => Ok((shape, x, y)),
        _ => Err("a negative token id cannot be passed to Feste's &[usize] API".into()),
    })
}

/// Logits, batch loss and batch gradients of `TrainableGPT2` (see the module comment).
fn step_grads(model: &TrainableGPT2, c: &Config, bt: &Batch, targets: &[usize]) -> (Vec<f32>, f32, GPT2Gradients) {
    let v = c.vocab_size;
    let mut logits = Vec::with_capacity(bt.b * bt.t * v);
    let mut sum: Option<Named> = None;
    for (row, tgt) in bt.tokens.chunks(bt.t).zip(targets.chunks(bt.t)) {
        let (lg, cache) = model.forward(row);
        let g = bridge::gradients_named(c, &model.backward(&lg, tgt, &cache));
        logits.extend_from_slice(&lg.data);
        sum = Some(match sum {
            None => g.into_iter().map(|(n, s, d)| (n, s, d.iter().map(|&x| 0.0f32 + x).collect())).collect(),
            Some(mut acc) => {
                for ((_, _, a), (_, _, d)) in acc.iter_mut().zip(&g) {
                    for (x, y) in a.iter_mut().zip(d) {
                        *x += y;
                    }
                }
                acc
            }
        });
    }
    let scale = 1.0 / bt.b as f32;
    let mut grads = sum.expect("at least one row");
    for (_, _, d) in grads.iter_mut() {
        for x in d.iter_mut() {
            *x *= scale;
        }
    }
    let loss = model.compute_loss(&Tensor::new(logits.clone(), vec![bt.b * bt.t, v]), targets);
    (logits, loss, bridge::gradients_from(c, &grads))
}

pub fn backward(case: &Case) -> OpResult {
    let (c, model) = match training_model(case)? {
        Ok(m) => m,
        Err(r) => return skipped(r),
    };
    let bt = match batch(case)? {
        Ok(b) => b,
        Err(r) => return skipped(r),
    };
    let targets = bt.targets.clone().ok_or_else(|| AdapterError("model/backward without in.targets".into()))?;
    let (logits, loss, grads) = step_grads(&model, &c, &bt, &targets);
    let mut out = Outputs::new();
    out.f32("logits", vec![bt.b, bt.t, c.vocab_size], logits);
    put_loss_and_grads(&mut out, &c, loss, &grads);
    Ok(Reply::Ok(out))
}

/// A short training run as Feste's train_gpt2 steps: forward and backward per row,
/// `clip_gradients`, `adamw_update`. Feste's learning-rate schedule is private to
/// train_gpt2, so only a constant rate without warmup can be asked for.
pub fn trajectory(case: &Case) -> OpResult {
    let c = case.config()?;
    if c.n_heads != 1 {
        return skipped(format!("n_heads = {}: {SINGLE_HEAD}", c.n_heads));
    }
    let schedule = case.arg("schedule").as_str().unwrap_or("constant");
    let warmup = case.arg_usize("warmup_steps")?;
    if schedule != "constant" || warmup != 0 {
        return skipped(format!(
            "schedule {schedule:?} with {warmup} warmup steps: Feste's learning-rate schedule \
             (get_lr_with_schedule, warmup then cosine with adaptive plateau cuts) is private to train_gpt2"
        ));
    }
    let p = bridge::read_set(case, &c, "param")?;
    let (xs, x, y) = match inputs_and_targets(case)? {
        Ok(ids) => ids,
        Err(r) => return skipped(r),
    };
    let (s, b, t) = (xs[0], xs[1], xs[2]);
    let lr = case.arg_f64("base_lr")? as f32;
    let max_norm = case.arg_f64("max_norm")? as f32;
    let wd = case.arg_f64("weight_decay")? as f32;
    let mut model = bridge::model_from_params(&c, &p)?;
    let mut opt = AdamWOptimizer::new(&model);
    opt.beta1 = case.arg_f64("beta1")? as f32;
    opt.beta2 = case.arg_f64("beta2")? as f32;
    opt.epsilon = case.arg_f64("eps")? as f32;
    let mut losses = Vec::with_capacity(s);
    for step in 0..s {
        let span = step * b * t..(step + 1) * b * t;
        let bt = Batch { b, t, tokens: x[span.clone()].to_vec(), targets: None };
        let (_, loss, mut grads) = step_grads(&model, &c, &bt, &y[span]);
        clip_gradients(&mut grads, max_norm);
        adamw_update(&mut model, &grads, &mut opt, lr, wd);
        losses.push(loss as f64);
    }
    let mut out = Outputs::new();
    out.tensor("loss", crate::safetensors::Tensor::f64(vec![s], losses));
    Ok(Reply::Ok(out))
}

/// Feste samples (`TrainableGPT2::generate(prompt, n, temperature)`) from a thread-local
/// LCG seeded 12345 that no caller can seed, and has no top-k: the case's seeded draw
/// cannot be asked for.
pub fn sample(_case: &Case) -> OpResult {
    skipped(
        "Feste's generate takes no seed (a thread-local LCG seeded 12345, shared by every call) and has no \
         top-k, so the case's seeded sampling cannot be asked for",
    )
}

/// One step's gradient (SPEC §micro-batches's K micro-batches). Feste's unit of work is one
/// sequence, and its accumulation (`add_gradients`, then `scale_gradients(1/count)`)
/// sums per-sequence gradients in order: the K micro-batches of B/K rows are the B rows
/// in order, so the step is the batch gradient above whatever K is.
pub fn step_gradient(case: &Case) -> OpResult {
    let (c, model) = match training_model(case)? {
        Ok(m) => m,
        Err(r) => return skipped(r),
    };
    let (shape, x, y) = match inputs_and_targets(case)? {
        Ok(ids) => ids,
        Err(r) => return skipped(r),
    };
    let bt = Batch { b: shape[0], t: shape[1], tokens: x, targets: None };
    let (_, loss, grads) = step_grads(&model, &c, &bt, &y);
    let mut out = Outputs::new();
    put_loss_and_grads(&mut out, &c, loss, &grads);
    Ok(Reply::Ok(out))
}

/// The suite's presets (SPEC §config), which a timing request names.
fn preset(name: &str) -> Option<Config> {
    let (n_embd, n_layers, n_heads) = match name {
        "tiny" => (128, 3, 4),
        "small" => (256, 4, 4),
        "medium" => (512, 6, 8),
        _ => return None,
    };
    Some(Config { vocab_size: 512, n_embd, n_heads, n_layers, block_size: 256, dropout_rate: 0.0 })
}

/// Seconds of `steps` timed training steps after `warmup` untimed ones (SPEC §step-benchmark: forward,
/// loss, backward, gradient norm and clip, AdamW) on a fixed batch. Feste's training
/// model is single-head: the preset's heads are one head of width C, the same arithmetic
/// count (NH * T*T*(C/NH) = T*T*C multiply-adds per score product).
pub fn time_steps(preset_name: &str, b: usize, t: usize, steps: usize, warmup: usize) -> Result<Vec<f64>, String> {
    let c = preset(preset_name).ok_or_else(|| format!("unknown preset {preset_name:?}"))?;
    if t > c.block_size {
        return Err(format!("seq_len {t} > block_size {}", c.block_size));
    }
    let c1 = Config { n_heads: 1, ..c.clone() };
    let mut model = TrainableGPT2::new(&c1);
    let mut opt = AdamWOptimizer::new(&model);
    let tokens: Vec<usize> = (0..b * (t + 1)).map(|i| (i * 7919 + 13) % c.vocab_size).collect();
    let x: Vec<usize> = tokens.chunks(t + 1).flat_map(|r| r[..t].to_vec()).collect();
    let y: Vec<usize> = tokens.chunks(t + 1).flat_map(|r| r[1..].to_vec()).collect();
    let bt = Batch { b, t, tokens: x, targets: None };
    let mut seconds = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let start = std::time::Instant::now();
        let (_, _, mut grads) = step_grads(&model, &c1, &bt, &y);
        let _ = feste::compute_grad_norm(&grads);
        clip_gradients(&mut grads, 1.0);
        adamw_update(&mut model, &grads, &mut opt, 1e-4, 0.1);
        if i >= warmup {
            seconds.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(seconds)
}
