//! layers/*: Feste's trainable layers (`TrainableLayerNorm`, `TrainableLinear`,
//! `TrainableSingleHeadAttention`, `gelu_forward`/`gelu_backward`).
//!
//! Feste's layers work on 2-D `[T, C]` tensors, one sequence at a time. LayerNorm,
//! linear and GELU act on rows, so the case's `[B, T, C]` is passed as `[B*T, C]`;
//! attention mixes positions, so it runs once per batch row.

use crate::case::{skipped, Case, OpResult, Outputs, Reply};
use feste::gpt2_trainable::{gelu_backward, gelu_forward, TrainableDropout, TrainableLayerNorm, TrainableLinear,
                            TrainableSingleHeadAttention};
use feste::Tensor;

fn rows(shape: &[usize]) -> (usize, usize) {
    let c = *shape.last().unwrap_or(&1);
    (shape.iter().product::<usize>() / c.max(1), c)
}

pub fn layernorm(case: &Case) -> OpResult {
    let (shape, x) = case.input_f32("x")?;
    let (_, gamma) = case.input_f32("gamma")?;
    let (_, beta) = case.input_f32("beta")?;
    let (_, dout) = case.input_f32("dout")?;
    let (n, c) = rows(&shape);
    let ln = TrainableLayerNorm { gamma: Tensor::new(gamma, vec![c]), beta: Tensor::new(beta, vec![c]), eps: 1e-5 };
    let (y, cache) = ln.forward(&Tensor::new(x, vec![n, c]));
    let g = ln.backward(&Tensor::new(dout, vec![n, c]), &cache);
    let mut out = Outputs::new();
    out.f32("out", shape.clone(), y.data);
    out.f32("dx", shape, g.x.data);
    out.f32("dgamma", vec![c], g.gamma.data);
    out.f32("dbeta", vec![c], g.beta.data);
    Ok(Reply::Ok(out))
}

/// Feste's linear layer always has a bias; a case without one gets a zero bias (adding
/// +0.0 changes no value) and `db` is not written.
pub fn linear(case: &Case) -> OpResult {
    let (shape, x) = case.input_f32("x")?;
    let (wshape, w) = case.input_f32("w")?;
    let (_, dout) = case.input_f32("dout")?;
    let (n, cin) = rows(&shape);
    let cout = wshape[1];
    let has_bias = case.has_input("b");
    let b = if has_bias { case.input_f32("b")?.1 } else { vec![0.0; cout] };
    let lin = TrainableLinear { weight: Tensor::new(w, vec![cin, cout]), bias: Tensor::new(b, vec![cout]) };
    let (y, cache) = lin.forward(&Tensor::new(x, vec![n, cin]));
    let g = lin.backward(&Tensor::new(dout, vec![n, cout]), &cache);
    let mut oshape = shape.clone();
    *oshape.last_mut().unwrap() = cout;
    let mut out = Outputs::new();
    out.f32("out", oshape, y.data);
    out.f32("dx", shape, g.x.data);
    out.f32("dw", wshape, g.weight.data);
    if has_bias {
        out.f32("db", vec![cout], g.bias.data);
    }
    Ok(Reply::Ok(out))
}

pub fn gelu(case: &Case) -> OpResult {
    let (shape, x) = case.input_f32("x")?;
    let (_, dout) = case.input_f32("dout")?;
    let x = Tensor::new(x, shape.clone());
    let y = gelu_forward(&x);
    let dx = gelu_backward(&Tensor::new(dout, shape.clone()), &x);
    let mut out = Outputs::new();
    out.f32("out", shape.clone(), y.data);
    out.f32("dx", shape, dx.data);
    Ok(Reply::Ok(out))
}

/// A `[rows, cols]` matrix that is zero but for ones at (offset + j, j): multiplying by
/// it copies values exactly (every other product is a signed zero).
fn selection(rows: usize, cols: usize, offset: usize) -> Tensor {
    let mut m = vec![0.0f32; rows * cols];
    for j in 0..cols {
        m[(offset + j) * cols + j] = 1.0;
    }
    Tensor::new(m, vec![rows, cols])
}

/// Causal attention on given q, k, v through `TrainableSingleHeadAttention`, whose
/// forward takes x and applies its own q/k/v/out projections. The adapter passes
/// x = [q | k | v] (`[T, 3C]`), projections that select each third (zero bias), an
/// identity output projection, and `n_embd = C`, Feste's scale being `1/sqrt(n_embd)`
/// (the head size of one head). Its backward's dx is then [dq | dk | dv], exactly.
pub fn attention(case: &Case) -> OpResult {
    let n_heads = case.arg_usize("n_heads")?;
    if n_heads != 1 {
        return skipped(format!(
            "n_heads = {n_heads}: Feste's trainable attention (TrainableSingleHeadAttention) has one head; \
             its multi-head attention (model::Attention) is forward-only and fused with its projections"
        ));
    }
    let (shape, q) = case.input_f32("q")?;
    let (_, k) = case.input_f32("k")?;
    let (_, v) = case.input_f32("v")?;
    let (_, dout) = case.input_f32("dout")?;
    let (b, t, c) = (shape[0], shape[1], shape[2]);
    let zero = || Tensor::new(vec![0.0; c], vec![c]);
    let attn = TrainableSingleHeadAttention {
        q_proj: TrainableLinear { weight: selection(3 * c, c, 0), bias: zero() },
        k_proj: TrainableLinear { weight: selection(3 * c, c, c), bias: zero() },
        v_proj: TrainableLinear { weight: selection(3 * c, c, 2 * c), bias: zero() },
        out_proj: TrainableLinear { weight: selection(c, c, 0), bias: zero() },
        attn_dropout: TrainableDropout::new(0.0),
        resid_dropout: TrainableDropout::new(0.0),
        n_embd: c,
    };
    let (mut y, mut dq, mut dk, mut dv) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for row in 0..b {
        let span = row * t * c..(row + 1) * t * c;
        let mut x = Vec::with_capacity(t * 3 * c);
        for pos in 0..t {
            let at = span.start + pos * c..span.start + (pos + 1) * c;
            x.extend_from_slice(&q[at.clone()]);
            x.extend_from_slice(&k[at.clone()]);
            x.extend_from_slice(&v[at]);
        }
        let (out, cache) = attn.forward(&Tensor::new(x, vec![t, 3 * c]));
        let g = attn.backward(&Tensor::new(dout[span].to_vec(), vec![t, c]), &cache);
        y.extend_from_slice(&out.data);
        for pos in 0..t {
            let base = pos * 3 * c;
            dq.extend_from_slice(&g.x.data[base..base + c]);
            dk.extend_from_slice(&g.x.data[base + c..base + 2 * c]);
            dv.extend_from_slice(&g.x.data[base + 2 * c..base + 3 * c]);
        }
    }
    let mut out = Outputs::new();
    out.f32("out", shape.clone(), y);
    out.f32("dq", shape.clone(), dq);
    out.f32("dk", shape.clone(), dk);
    out.f32("dv", shape, dv);
    Ok(Reply::Ok(out))
}
