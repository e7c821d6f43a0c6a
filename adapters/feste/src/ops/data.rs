//! data/*: Feste's `train_val_split` and `TextDataLoader`.

use super::to_usize;
use crate::case::{skipped, AdapterError, Case, OpResult, Outputs, Reply};
use feste::{train_val_split, BPETokenizer, TextDataLoader};
use serde_json::{json, Map, Value};

fn tokens_of(case: &Case) -> Result<Option<Vec<usize>>, AdapterError> {
    let (_, ids) = case.input_ids("tokens")?;
    Ok(to_usize(&ids))
}

/// `train_val_split(tokens, val_fraction as f32)`.
pub fn split(case: &Case) -> OpResult {
    let tokens = match tokens_of(case)? {
        Some(t) => t,
        None => return skipped("a negative token id cannot be passed to Feste's &[usize] API"),
    };
    let frac = case.arg_f64("val_fraction")? as f32;
    let (train, val) = train_val_split(&tokens, frac);
    let mut out = Outputs::new();
    out.ids("train", vec![train.len()], train.iter().map(|&x| x as i64).collect());
    out.ids("val", vec![val.len()], val.iter().map(|&x| x as i64).collect());
    Ok(Reply::Ok(out))
}

/// A text and a tokenizer whose encoding of it is exactly `tokens`.
///
/// Feste's loader takes text and a tokenizer (`TextDataLoader::new(text, tokenizer, T, B)`),
/// not ids, so the adapter spells the ids: the k-th distinct id becomes one character
/// (ASCII for k < 128, then two-byte UTF-8 characters joined by one merge each), and a
/// tokenizer JSON maps each character's byte string to its id. Merges never cross a
/// character boundary, so encoding gives the ids back; the adapter checks that with
/// Feste's own `encode` before using it.
fn spell(tokens: &[usize]) -> Result<(String, BPETokenizer), AdapterError> {
    let mut distinct: Vec<usize> = tokens.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() > 128 + 1920 {
        return Err(AdapterError(format!("{} distinct ids: more than the adapter can spell", distinct.len())));
    }
    let mut vocab = Map::new();
    let mut merges = Vec::new();
    let mut chars = std::collections::HashMap::new();
    for (k, &id) in distinct.iter().enumerate() {
        let ch = if k < 128 { char::from(k as u8) } else { char::from_u32(0x80 + (k - 128) as u32).unwrap() };
        let mut buf = [0u8; 4];
        let bytes = ch.encode_utf8(&mut buf).as_bytes();
        let parts: Vec<String> = bytes.iter().map(|b| format!("<{b:02x}>")).collect();
        if parts.len() == 2 {
            merges.push(json!([parts[0], parts[1]]));
        }
        vocab.insert(parts.concat(), json!(id));
        chars.insert(id, ch);
    }
    let tok: BPETokenizer =
        serde_json::from_value(json!({"vocab": Value::Object(vocab), "merges": merges, "unk_token": "<unk>"}))?;
    let text: String = tokens.iter().map(|t| chars[t]).collect();
    if tok.encode(&text) != tokens {
        return Err(AdapterError("the spelled text does not encode back to the case's tokens".into()));
    }
    Ok((text, tok))
}

/// Every batch of one pass: `train_val_split` picks the split (Feste's loader has no
/// validation mode), then `TextDataLoader::next_batch` until it returns None.
pub fn sequential(case: &Case) -> OpResult {
    let tokens = match tokens_of(case)? {
        Some(t) => t,
        None => return skipped("a negative token id cannot be passed to Feste's &[usize] API"),
    };
    let (t, b) = (case.arg_usize("seq_len")?, case.arg_usize("batch_size")?);
    let frac = case.arg_f64("val_fraction")? as f32;
    let validation = case.arg("validation").as_bool().unwrap_or(false);
    let (train, val) = train_val_split(&tokens, frac);
    let part = if validation { val } else { train };
    let (text, tok) = spell(part)?;
    let mut loader = TextDataLoader::new(&text, &tok, t, b);
    let (mut xs, mut ys, mut n) = (Vec::new(), Vec::new(), 0usize);
    while let Some((inputs, targets)) = loader.next_batch() {
        if inputs.len() != b || inputs.iter().chain(&targets).any(|r| r.len() != t) {
            return Err(AdapterError(format!(
                "Feste's loader returned a batch of {} rows (asked for {b} of {t} tokens): not a [B, T] array",
                inputs.len()
            )));
        }
        xs.extend(inputs.iter().flatten().map(|&x| x as i64));
        ys.extend(targets.iter().flatten().map(|&x| x as i64));
        n += 1;
    }
    let mut out = Outputs::new();
    out.ids("x", vec![n, b, t], xs);
    out.ids("y", vec![n, b, t], ys);
    Ok(Reply::Ok(out))
}

#[cfg(test)]
mod tests {
    use super::spell;

    #[test]
    fn spelled_text_encodes_back_to_ids_beyond_ascii() {
        // 300 distinct ids (ASCII characters and two-byte ones), repeated and shuffled
        let tokens: Vec<usize> = (0..900).map(|i| (i * 7 + i / 300) % 300 * 3 + 1).collect();
        let (text, tok) = spell(&tokens).expect("spelled");
        assert_eq!(tok.encode(&text), tokens);
        assert!(text.chars().any(|c| c.len_utf8() == 2), "ids past 128 use two-byte characters");
    }
}
