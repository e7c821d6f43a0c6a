//! A minimal safetensors reader and writer (Debian packages no safetensors crate).
//!
//! The format: an 8-byte little-endian header length N, N bytes of JSON
//! (`{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}`,
//! optionally `"__metadata__": {str: str}`), then the raw little-endian data; the
//! offsets are relative to the first byte after the header.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

/// One tensor's values, in the dtypes the vectors use.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Data {
    /// How many values it holds.
    fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::U32(v) => v.len(),
            Data::U8(v) => v.len(),
            Data::Bool(v) => v.len(),
        }
    }
}

impl Tensor {
    /// A tensor of `data` with `shape`; they must fit (a mismatch is the adapter's bug, not the case's).
    fn new(shape: Vec<usize>, data: Data) -> Tensor {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "shape does not fit the values");
        Tensor { shape, data }
    }
    pub fn f32(shape: Vec<usize>, values: Vec<f32>) -> Tensor {
        Tensor::new(shape, Data::F32(values))
    }
    pub fn f64(shape: Vec<usize>, values: Vec<f64>) -> Tensor {
        Tensor::new(shape, Data::F64(values))
    }
    pub fn i64(shape: Vec<usize>, values: Vec<i64>) -> Tensor {
        Tensor::new(shape, Data::I64(values))
    }
    pub fn u8(shape: Vec<usize>, values: Vec<u8>) -> Tensor {
        Tensor::new(shape, Data::U8(values))
    }
    pub fn scalar_f32(x: f32) -> Tensor {
        Tensor::f32(vec![], vec![x])
    }
    pub fn scalar_f64(x: f64) -> Tensor {
        Tensor::f64(vec![], vec![x])
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn dtype(&self) -> &'static str {
        match self.data {
            Data::F32(_) => "F32",
            Data::F64(_) => "F64",
            Data::I64(_) => "I64",
            Data::I32(_) => "I32",
            Data::U32(_) => "U32",
            Data::U8(_) => "U8",
            Data::Bool(_) => "BOOL",
        }
    }

    /// The values as f32; a float64 tensor is refused (rounding it would hide a dtype mix-up).
    pub fn as_f32(&self, name: &str) -> Result<Vec<f32>, String> {
        match &self.data {
            Data::F32(v) => Ok(v.clone()),
            _ => Err(format!("tensor {name}: expected F32, found {}", self.dtype())),
        }
    }

    /// Integer values (ids, offsets) as i64, from any integer dtype.
    pub fn as_i64(&self, name: &str) -> Result<Vec<i64>, String> {
        match &self.data {
            Data::I64(v) => Ok(v.clone()),
            Data::I32(v) => Ok(v.iter().map(|&x| x as i64).collect()),
            Data::U32(v) => Ok(v.iter().map(|&x| x as i64).collect()),
            Data::U8(v) => Ok(v.iter().map(|&x| x as i64).collect()),
            _ => Err(format!("tensor {name}: expected an integer dtype, found {}", self.dtype())),
        }
    }

    fn raw(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.data {
            Data::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Data::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Data::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Data::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Data::U32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Data::U8(v) => out.extend_from_slice(v),
            Data::Bool(v) => v.iter().for_each(|&x| out.push(x as u8)),
        }
        out
    }
}

fn decode(dtype: &str, bytes: &[u8], name: &str) -> Result<Data, String> {
    fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        bytes.chunks_exact(N).map(|c| c.try_into().unwrap())
    }
    let width = match dtype {
        "F32" | "I32" | "U32" => 4,
        "F64" | "I64" => 8,
        "U8" | "BOOL" => 1,
        other => return Err(format!("tensor {name}: dtype {other} is not one this adapter reads")),
    };
    if bytes.len() % width != 0 {
        return Err(format!("tensor {name}: {} bytes is not a multiple of {width}", bytes.len()));
    }
    Ok(match dtype {
        "F32" => Data::F32(chunks::<4>(bytes).map(f32::from_le_bytes).collect()),
        "I32" => Data::I32(chunks::<4>(bytes).map(i32::from_le_bytes).collect()),
        "U32" => Data::U32(chunks::<4>(bytes).map(u32::from_le_bytes).collect()),
        "F64" => Data::F64(chunks::<8>(bytes).map(f64::from_le_bytes).collect()),
        "I64" => Data::I64(chunks::<8>(bytes).map(i64::from_le_bytes).collect()),
        "U8" => Data::U8(bytes.to_vec()),
        _ => Data::Bool(bytes.iter().map(|&b| b != 0).collect()),
    })
}

/// Read every tensor of a safetensors file.
pub fn read(path: &Path) -> Result<BTreeMap<String, Tensor>, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let where_ = path.display();
    if bytes.len() < 8 {
        return Err(format!("{where_}: shorter than the 8-byte header length"));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    if n > bytes.len() - 8 {
        return Err(format!("{where_}: header length {n} runs past the end of the file"));
    }
    let header: Value = serde_json::from_slice(&bytes[8..8 + n])
        .map_err(|e| format!("{where_}: header JSON: {e}"))?;
    let header = header.as_object().ok_or_else(|| format!("{where_}: header is not an object"))?;
    let body = &bytes[8 + n..];
    let mut out = BTreeMap::new();
    for (name, entry) in header {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: &str| format!("{where_}: tensor {name}: {what}");
        let dtype = entry["dtype"].as_str().ok_or_else(|| bad("no dtype"))?;
        let shape: Vec<usize> = entry["shape"]
            .as_array()
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize).ok_or_else(|| bad("a dim is not an integer")))
            .collect::<Result<_, _>>()?;
        let offs = entry["data_offsets"].as_array().ok_or_else(|| bad("no data_offsets"))?;
        if offs.len() != 2 {
            return Err(bad("data_offsets is not [begin, end]"));
        }
        let (b, e) = (
            offs[0].as_u64().ok_or_else(|| bad("begin offset"))? as usize,
            offs[1].as_u64().ok_or_else(|| bad("end offset"))? as usize,
        );
        if b > e || e > body.len() {
            return Err(bad(&format!("data_offsets [{b}, {e}] outside the {} data bytes", body.len())));
        }
        let data = decode(dtype, &body[b..e], name)?;
        let t = Tensor { shape, data };
        let count = t.data.len();
        if count != t.numel() {
            return Err(bad(&format!("shape {:?} needs {} values, data holds {count}", t.shape, t.numel())));
        }
        out.insert(name.clone(), t);
    }
    Ok(out)
}

/// Write tensors (name order) to a safetensors file: temp file, then rename.
pub fn write(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<(), String> {
    let mut header = Map::new();
    let mut body = Vec::new();
    for (name, t) in tensors {
        let raw = t.raw();
        let begin = body.len();
        body.extend_from_slice(&raw);
        header.insert(
            name.clone(),
            json!({"dtype": t.dtype(), "shape": t.shape, "data_offsets": [begin, body.len()]}),
        );
    }
    let mut head = serde_json::to_vec(&Value::Object(header)).map_err(|e| e.to_string())?;
    while head.len() % 8 != 0 {
        head.push(b' '); // the format allows trailing spaces; data then starts 8-aligned
    }
    let tmp = path.with_extension("safetensors.tmp");
    let write_all = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&(head.len() as u64).to_le_bytes())?;
        f.write_all(&head)?;
        f.write_all(&body)?;
        f.flush()?;
        fs::rename(&tmp, path)
    };
    write_all().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("{}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_dtype() {
        let dir = std::env::temp_dir().join(format!("feste-adapter-st-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        let mut m = BTreeMap::new();
        m.insert("a".into(), Tensor::f32(vec![2, 3], vec![1.0, -2.5, 3.0, 0.0, f32::MIN_POSITIVE, 7.0]));
        m.insert("b".into(), Tensor::i64(vec![3], vec![-1, 0, i64::MAX]));
        m.insert("c".into(), Tensor::u8(vec![0], vec![]));
        m.insert("d".into(), Tensor::scalar_f64(0.1));
        write(&path, &m).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back, m);
        let bytes = fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn header_past_the_end_is_refused() {
        let dir = std::env::temp_dir().join(format!("feste-adapter-st2-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.safetensors");
        fs::write(&path, [255u8, 0, 0, 0, 0, 0, 0, 0, b'{', b'}']).unwrap();
        assert!(read(&path).unwrap_err().contains("runs past the end"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
