//! Tensors in and out of safetensors files, with their ONNX element types.

use crate::error::{Error, Result};
use crate::value::{numel, DType, Data, Value};
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

/// Reads every tensor of a safetensors file (names sorted).
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, Value)>> {
    let src = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{src}: cannot read: {e}")))?;
    parse_safetensors(&bytes, &src)
}

/// Parses the bytes of a safetensors file; `src` names it in messages.
pub fn parse_safetensors(bytes: &[u8], src: &str) -> Result<Vec<(String, Value)>> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        Error::Malformed(format!(
            "{src}: not a valid safetensors file ({e}); is it truncated or of another format?"
        ))
    })?;
    let mut out = Vec::new();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    for name in names {
        let v = st
            .tensor(&name)
            .map_err(|e| Error::Malformed(format!("{src}: tensor '{name}': {e}")))?;
        let shape = v.shape().to_vec();
        numel(&shape, &format!("{src}: tensor '{name}'"))?;
        let b = v.data();
        let ints = |size: usize, f: &dyn Fn(&[u8]) -> i64| -> Data {
            Data::Int(b.chunks_exact(size).map(f).collect())
        };
        let (dtype, data) = match v.dtype() {
            Dtype::F32 => (DType::F32, Data::F32(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())),
            Dtype::F64 => (DType::F64, Data::F64(b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect())),
            Dtype::I64 => (DType::I64, ints(8, &|c| i64::from_le_bytes(c.try_into().unwrap()))),
            Dtype::I32 => (DType::I32, ints(4, &|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)),
            Dtype::I16 => (DType::I16, ints(2, &|c| i16::from_le_bytes(c.try_into().unwrap()) as i64)),
            Dtype::I8 => (DType::I8, ints(1, &|c| c[0] as i8 as i64)),
            Dtype::U8 => (DType::U8, ints(1, &|c| c[0] as i64)),
            Dtype::U16 => (DType::U16, ints(2, &|c| u16::from_le_bytes(c.try_into().unwrap()) as i64)),
            Dtype::U32 => (DType::U32, ints(4, &|c| u32::from_le_bytes(c.try_into().unwrap()) as i64)),
            Dtype::U64 => (DType::U64, ints(8, &|c| u64::from_le_bytes(c.try_into().unwrap()) as i64)),
            Dtype::BOOL => (DType::Bool, ints(1, &|c| (c[0] != 0) as i64)),
            other => {
                return Err(Error::Unsupported(format!(
                    "{src}: tensor '{name}' has dtype {other:?}; recur reads F32, F64, the integer types and BOOL"
                )))
            }
        };
        out.push((name, Value { dtype, shape, data }));
    }
    Ok(out)
}

/// The bytes of a safetensors file holding `tensors`, each in its own element type.
pub fn serialize_safetensors(tensors: &[(String, Value)]) -> Result<Vec<u8>> {
    let mut bufs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, v) in tensors {
        let (dt, bytes): (Dtype, Vec<u8>) = match (&v.data, v.dtype) {
            (Data::F32(d), _) => (Dtype::F32, d.iter().flat_map(|x| x.to_le_bytes()).collect()),
            (Data::F64(d), _) => (Dtype::F64, d.iter().flat_map(|x| x.to_le_bytes()).collect()),
            (Data::Int(d), t) => match t {
                DType::I32 => (
                    Dtype::I32,
                    d.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect(),
                ),
                DType::I16 => (
                    Dtype::I16,
                    d.iter().flat_map(|&x| (x as i16).to_le_bytes()).collect(),
                ),
                DType::I8 => (Dtype::I8, d.iter().map(|&x| x as i8 as u8).collect()),
                DType::U8 => (Dtype::U8, d.iter().map(|&x| x as u8).collect()),
                DType::U16 => (
                    Dtype::U16,
                    d.iter().flat_map(|&x| (x as u16).to_le_bytes()).collect(),
                ),
                DType::U32 => (
                    Dtype::U32,
                    d.iter().flat_map(|&x| (x as u32).to_le_bytes()).collect(),
                ),
                DType::U64 => (
                    Dtype::U64,
                    d.iter().flat_map(|&x| (x as u64).to_le_bytes()).collect(),
                ),
                DType::Bool => (Dtype::BOOL, d.iter().map(|&x| (x != 0) as u8).collect()),
                _ => (Dtype::I64, d.iter().flat_map(|x| x.to_le_bytes()).collect()),
            },
        };
        bufs.push((name.clone(), dt, v.shape.clone(), bytes));
    }
    let mut views = Vec::with_capacity(bufs.len());
    for (name, dt, shape, bytes) in &bufs {
        let view = safetensors::tensor::TensorView::new(*dt, shape.clone(), bytes)
            .map_err(|e| Error::Invalid(format!("tensor '{name}': {e}")))?;
        views.push((name.clone(), view));
    }
    safetensors::serialize(views, &None)
        .map_err(|e| Error::Invalid(format!("cannot serialize tensors: {e}")))
}

/// Writes `tensors` to a safetensors file, atomically.
pub fn write_safetensors(path: &Path, tensors: &[(String, Value)]) -> Result<()> {
    let bytes = serialize_safetensors(tensors)?;
    recur::io::state_dict::write_atomic(path, &bytes).map_err(|e| Error::Io(e.to_string()))
}
