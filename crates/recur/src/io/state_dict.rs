//! PyTorch weights in and out: safetensors files holding a `state_dict`.
//!
//! [`TensorFile`] reads any safetensors file (checked: a truncated file or a header that
//! points past the end is an error, never a panic, and nothing is allocated beyond the file's
//! own size). [`load_rnn`] and [`load_cell`] infer what the names and shapes tell (cell kind,
//! layers, directions, sizes, bias, proj_size), check every tensor against the
//! [`ParamLayout`] and build the model. [`save`] writes a state_dict that
//! `module.load_state_dict(safetensors.torch.load_file(path), strict=True)` accepts.

use crate::core::cell::Cell;
use crate::core::config::{Mode, RnnConfig};
use crate::core::layout::{Naming, ParamLayout};
use crate::core::rnn::Rnn;
use crate::core::tensor::Tensor;
use crate::error::{fmt_shape, Error, Result};
use recur_kernels::Real;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The element types a tensor may have in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// f16
    F16,
    /// bf16
    BF16,
    /// f32
    F32,
    /// f64
    F64,
    /// An integer type (for lengths): bits and signedness.
    Int(u8, bool),
    /// Anything else (bool, f8, ...).
    Other,
}

impl DType {
    fn of(d: Dtype) -> DType {
        match d {
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F32 => DType::F32,
            Dtype::F64 => DType::F64,
            Dtype::I8 => DType::Int(8, true),
            Dtype::U8 => DType::Int(8, false),
            Dtype::I16 => DType::Int(16, true),
            Dtype::U16 => DType::Int(16, false),
            Dtype::I32 => DType::Int(32, true),
            Dtype::U32 => DType::Int(32, false),
            Dtype::I64 => DType::Int(64, true),
            Dtype::U64 => DType::Int(64, false),
            _ => DType::Other,
        }
    }
    /// True for the floating-point types.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }
}

/// One tensor of a file: type, shape and raw little-endian bytes.
#[derive(Clone, Debug)]
pub struct RawTensor {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    bytes: Vec<u8>,
    dtype_name: String,
}

/// The tensors and metadata of a safetensors file.
#[derive(Clone, Debug)]
pub struct TensorFile {
    source: String,
    tensors: BTreeMap<String, RawTensor>,
    metadata: HashMap<String, String>,
}

fn half_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exp = ((bits >> 10) & 0x1f) as u32;
    let man = (bits & 0x3ff) as u32;
    let v = if exp == 0 {
        // zero or subnormal: man * 2^-24
        let mag = man as f32 * (1.0 / 16_777_216.0);
        return if sign != 0 { -mag } else { mag };
    } else if exp == 31 {
        sign | 0x7f80_0000 | (man << 13)
    } else {
        sign | ((exp + 112) << 23) | (man << 13)
    };
    f32::from_bits(v)
}

impl TensorFile {
    /// Reads and checks a safetensors file.
    pub fn read(path: impl AsRef<Path>) -> Result<TensorFile> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::file(path, "cannot read", e))?;
        TensorFile::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses the bytes of a safetensors file; `source` names it in error messages.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<TensorFile> {
        let bad = |e: safetensors::SafeTensorError| {
            Error::Weights(format!(
                "{source}: not a valid safetensors file ({e}); is it truncated or of another format?"
            ))
        };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(bad)?;
        let st = SafeTensors::deserialize(bytes).map_err(bad)?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            tensors.insert(
                name,
                RawTensor {
                    dtype: DType::of(view.dtype()),
                    shape: view.shape().to_vec(),
                    bytes: view.data().to_vec(),
                    dtype_name: format!("{:?}", view.dtype()),
                },
            );
        }
        Ok(TensorFile {
            source: source.to_string(),
            tensors,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    /// The file name used in messages.
    pub fn source(&self) -> &str {
        &self.source
    }
    /// Every tensor name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|s| s.as_str())
    }
    /// The tensor called `name`, if any.
    pub fn raw(&self, name: &str) -> Option<&RawTensor> {
        self.tensors.get(name)
    }
    /// Whether the file holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
    /// The `__metadata__` of the file.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Replaces every int8 tensor `X` (rows, ...) stored with a companion `X.scale` (f32, one
    /// value per row) by its f32 values `scale[row] · X[row, ...]`, and drops the companion:
    /// how `recur quantize --precision int8` stores weights (docs/precision.md).
    pub fn dequantize_int8(&mut self) -> Result<()> {
        let names: Vec<String> = self
            .tensors
            .iter()
            .filter(|(_, t)| t.dtype == DType::Int(8, true))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let scale_name = format!("{name}.scale");
            let Some(st) = self.tensors.get(&scale_name) else {
                continue;
            };
            let t = &self.tensors[&name];
            let rows = t.shape.first().copied().unwrap_or(1);
            if st.dtype != DType::F32 || st.shape != [rows] {
                return Err(Error::Weights(format!(
                    "{}: tensor '{scale_name}' must be F32 of shape [{rows}] (one scale per row of '{name}'), got {} of shape {}",
                    self.source,
                    st.dtype_name,
                    fmt_shape(&st.shape)
                )));
            }
            let scales: Vec<f32> = st
                .bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let per_row = t.bytes.len().checked_div(rows).unwrap_or(0);
            let bytes: Vec<u8> = t
                .bytes
                .iter()
                .enumerate()
                .flat_map(|(k, &q)| (scales[k / per_row] * (q as i8) as f32).to_le_bytes())
                .collect();
            let shape = t.shape.clone();
            self.tensors.remove(&scale_name);
            self.tensors.insert(
                name,
                RawTensor {
                    dtype: DType::F32,
                    shape,
                    bytes,
                    dtype_name: "F32".into(),
                },
            );
        }
        Ok(())
    }

    /// The floating-point tensor `name`, converted to `T`; an error naming the tensor if it
    /// is missing or not a float.
    pub fn float<T: Real>(&self, name: &str) -> Result<Tensor<T>> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::Weights(format!("{}: no tensor '{name}'", self.source)))?;
        let data: Vec<T> = match t.dtype {
            DType::F32 => t
                .bytes
                .chunks_exact(4)
                .map(|c| T::from_f64(f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64))
                .collect(),
            DType::F64 => t
                .bytes
                .chunks_exact(8)
                .map(|c| T::from_f64(f64::from_le_bytes(c.try_into().unwrap())))
                .collect(),
            DType::F16 => t
                .bytes
                .chunks_exact(2)
                .map(|c| T::from_f64(half_to_f32(u16::from_le_bytes([c[0], c[1]])) as f64))
                .collect(),
            DType::BF16 => t
                .bytes
                .chunks_exact(2)
                .map(|c| T::from_f64(f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64))
                .collect(),
            _ => {
                return Err(Error::Weights(format!(
                    "{}: tensor '{name}' has dtype {}, expected a floating-point type (F32, F64, F16, BF16)",
                    self.source, t.dtype_name
                )))
            }
        };
        Tensor::new(&t.shape, data)
    }

    /// The integer vector `name` (e.g. sequence lengths); an error if it is not a 1-D tensor
    /// of integers or holds a negative value.
    pub fn lengths(&self, name: &str) -> Result<Vec<usize>> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::Weights(format!("{}: no tensor '{name}'", self.source)))?;
        let DType::Int(bits, signed) = t.dtype else {
            return Err(Error::Input(format!(
                "{}: tensor '{name}' has dtype {}, expected integers (e.g. I64)",
                self.source, t.dtype_name
            )));
        };
        if t.shape.len() != 1 {
            return Err(Error::Input(format!(
                "{}: tensor '{name}' must be 1-D (one length per sequence), got shape {}",
                self.source,
                fmt_shape(&t.shape)
            )));
        }
        let w = (bits / 8) as usize;
        let mut out = Vec::with_capacity(t.shape[0]);
        for c in t.bytes.chunks_exact(w) {
            let mut buf = [0u8; 8];
            buf[..w].copy_from_slice(c);
            let neg = signed && c[w - 1] & 0x80 != 0;
            if neg {
                return Err(Error::Input(format!(
                    "{}: tensor '{name}' holds a negative length",
                    self.source
                )));
            }
            out.push(u64::from_le_bytes(buf) as usize);
        }
        Ok(out)
    }
}

/// A tensor to write: name, shape and values.
pub enum OutTensor<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// f64 values.
    F64(&'a [f64]),
    /// i64 values.
    I64(&'a [i64]),
    /// int8 values (the weights of `recur quantize --precision int8`).
    I8(&'a [i8]),
    /// IEEE half-precision values, as their bits.
    F16(&'a [u16]),
    /// bfloat16 values, as their bits.
    Bf16(&'a [u16]),
}

/// Writes tensors to a safetensors file, atomically (a temporary file in the same folder,
/// flushed, then renamed over `path`). Metadata `{"format": "pt"}` is added, as
/// `safetensors.torch.save_file` does.
pub fn write_tensors(
    path: impl AsRef<Path>,
    tensors: &[(String, Vec<usize>, OutTensor<'_>)],
    metadata: &[(&str, &str)],
) -> Result<()> {
    let bytes = serialize_tensors(tensors, metadata)?;
    write_atomic(path.as_ref(), &bytes)
}

/// The bytes of a safetensors file holding `tensors`.
pub fn serialize_tensors(
    tensors: &[(String, Vec<usize>, OutTensor<'_>)],
    metadata: &[(&str, &str)],
) -> Result<Vec<u8>> {
    let mut views = Vec::with_capacity(tensors.len());
    let mut bufs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, shape, data) in tensors {
        let (dtype, bytes): (Dtype, Vec<u8>) = match data {
            OutTensor::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            OutTensor::F64(v) => (Dtype::F64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            OutTensor::I64(v) => (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            OutTensor::I8(v) => (Dtype::I8, v.iter().map(|&x| x as u8).collect()),
            OutTensor::F16(v) => (Dtype::F16, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            OutTensor::Bf16(v) => (
                Dtype::BF16,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        };
        bufs.push((name.clone(), dtype, shape.clone(), bytes));
    }
    for (name, dtype, shape, bytes) in &bufs {
        let v = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
            .map_err(|e| Error::Input(format!("tensor '{name}': {e}")))?;
        views.push((name.clone(), v));
    }
    let mut meta: HashMap<String, String> = HashMap::new();
    meta.insert("format".into(), "pt".into());
    for (k, v) in metadata {
        meta.insert(k.to_string(), v.to_string());
    }
    safetensors::serialize(views, &Some(meta))
        .map_err(|e| Error::Input(format!("cannot serialize tensors: {e}")))
}

/// Writes `bytes` to `path` so that `path` holds either its old content or all of `bytes`,
/// whatever happens during the write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |e: std::io::Error| Error::file(path, "cannot write", e);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::Io(format!("{}: not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// How to read a state_dict.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The module prefix of the recurrent layer's keys, e.g. `encoder.rnn` (with or without
    /// the final dot). `None`: found from the keys when there is exactly one candidate.
    pub prefix: Option<String>,
    /// For RNN weights, which nonlinearity (`nn.RNN(nonlinearity='relu')`); the weights do not
    /// say. `None` means tanh, PyTorch's default. Given for LSTM/GRU weights, it is an error.
    pub relu: Option<bool>,
    /// Sets `batch_first` on the loaded model (the weights do not say).
    pub batch_first: bool,
}

fn normalize_prefix(p: &str) -> String {
    if p.is_empty() || p.ends_with('.') {
        p.to_string()
    } else {
        format!("{p}.")
    }
}

/// Finds the prefix under which `anchor` (e.g. `weight_ih_l0`) appears.
fn find_prefix(file: &TensorFile, anchor: &str) -> Vec<String> {
    let mut v: Vec<String> = file
        .names()
        .filter(|n| *n == anchor || n.ends_with(&format!(".{anchor}")))
        .map(|n| n[..n.len() - anchor.len()].to_string())
        .collect();
    v.sort();
    v
}

fn resolve_prefix(file: &TensorFile, opts: &LoadOptions, naming: Naming) -> Result<String> {
    let anchor = match naming {
        Naming::Layer => "weight_ih_l0",
        Naming::Cell => "weight_ih",
    };
    if let Some(p) = &opts.prefix {
        let p = normalize_prefix(p);
        if !file.contains(&format!("{p}{anchor}")) {
            let found = find_prefix(file, anchor);
            let hint = if found.is_empty() {
                String::new()
            } else {
                format!("; the file has it under the prefix {}", quote_list(&found))
            };
            return Err(Error::Weights(format!(
                "{}: no tensor '{p}{anchor}' for the prefix '{p}'{hint}",
                file.source
            )));
        }
        return Ok(p);
    }
    let found = find_prefix(file, anchor);
    match found.len() {
        1 => Ok(found.into_iter().next().unwrap()),
        0 => Err(Error::Weights(format!(
            "{}: no recurrent weights found: expected a tensor named '{anchor}' (possibly under a module prefix such as 'encoder.rnn.{anchor}'); the file holds {}",
            file.source,
            summarize_names(file)
        ))),
        _ => Err(Error::Weights(format!(
            "{}: several recurrent layers in this file ({}); choose one with a prefix (--prefix)",
            file.source,
            quote_list(&found)
        ))),
    }
}

fn quote_list(v: &[String]) -> String {
    v.iter()
        .map(|s| {
            if s.is_empty() {
                "'' (none)".to_string()
            } else {
                format!("'{s}'")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn summarize_names(file: &TensorFile) -> String {
    let names: Vec<&str> = file.names().take(8).collect();
    let n = file.tensors.len();
    if n == 0 {
        "no tensors".into()
    } else if n > names.len() {
        format!("{} and {} more", names.join(", "), n - names.len())
    } else {
        names.join(", ")
    }
}

fn shape_of<'a>(file: &'a TensorFile, name: &str, ndim: usize) -> Result<&'a [usize]> {
    let t = file
        .raw(name)
        .ok_or_else(|| Error::Weights(format!("{}: missing tensor '{name}'", file.source)))?;
    if t.shape.len() != ndim {
        return Err(Error::Weights(format!(
            "{}: tensor '{name}' has shape {}, expected {ndim} dimensions",
            file.source,
            fmt_shape(&t.shape)
        )));
    }
    Ok(&t.shape)
}

/// Infers the configuration of the recurrent layer under `prefix` from names and shapes.
fn infer_config(
    file: &TensorFile,
    p: &str,
    naming: Naming,
    relu: Option<bool>,
) -> Result<RnnConfig> {
    let sfx = |stem: &str, k: usize, rev: bool| match naming {
        Naming::Cell => format!("{p}{stem}"),
        Naming::Layer => format!("{p}{stem}_l{k}{}", if rev { "_reverse" } else { "" }),
    };
    let w_ih = shape_of(file, &sfx("weight_ih", 0, false), 2)?;
    let w_hh = shape_of(file, &sfx("weight_hh", 0, false), 2)?;
    let hr_name = sfx("weight_hr", 0, false);
    // A projected LSTM has `weight_hr_l*` tensors: then weight_hh is (4H, P). Any of them
    // tells (so a missing or mis-shaped weight_hr_l0 is reported by the layout check below,
    // under its own name).
    let projection = if naming == Naming::Layer {
        file.names()
            .find(|n| {
                n.strip_prefix(p)
                    .is_some_and(|r| r.starts_with("weight_hr_l") && !r.contains('.'))
            })
            .map(|n| n.to_string())
    } else {
        None
    };
    let (hidden, proj) = if let Some(hr) = &projection {
        if w_hh[0] % 4 != 0 || w_hh[0] == 0 {
            return Err(Error::Weights(format!(
                "{}: tensor '{hr}' (a projection) is only valid for LSTM weights, but '{}' has shape {}, not (4 * hidden_size, proj_size)",
                file.source,
                sfx("weight_hh", 0, false),
                fmt_shape(w_hh)
            )));
        }
        let (h, pz) = (w_hh[0] / 4, w_hh[1]);
        if pz >= h {
            return Err(Error::Weights(format!(
                "{}: tensor '{}' has shape {}, so proj_size {pz} and hidden_size {h}; proj_size has to be smaller than hidden_size",
                file.source,
                sfx("weight_hh", 0, false),
                fmt_shape(w_hh)
            )));
        }
        (h, pz)
    } else {
        (w_hh[1], 0)
    };
    if file.contains(&hr_name) && naming == Naming::Cell {
        return Err(Error::Weights(format!(
            "{}: tensor '{hr_name}': cells have no projection",
            file.source
        )));
    }
    if hidden == 0 || w_hh[0] % hidden != 0 {
        return Err(Error::Weights(format!(
            "{}: tensor '{}' has shape {}: its rows should be a multiple (1, 3 or 4 gates) of hidden_size {hidden}",
            file.source,
            sfx("weight_hh", 0, false),
            fmt_shape(w_hh)
        )));
    }
    let mode = match (w_hh[0] / hidden, relu) {
        (4, None) => Mode::Lstm,
        (3, None) => Mode::Gru,
        (1, Some(true)) => Mode::RnnRelu,
        (1, _) => Mode::RnnTanh,
        (4 | 3, Some(_)) => {
            return Err(Error::Weights(format!(
                "{}: these are {} weights; a nonlinearity applies only to RNN weights",
                file.source,
                if w_hh[0] / hidden == 4 { "LSTM" } else { "GRU" }
            )))
        }
        (g, _) => {
            return Err(Error::Weights(format!(
                "{}: tensor '{}' has {} rows for hidden_size {hidden}: {g} gate blocks, expected 1 (RNN), 3 (GRU) or 4 (LSTM)",
                file.source,
                sfx("weight_hh", 0, false),
                w_hh[0]
            )))
        }
    };
    if proj > 0 && mode != Mode::Lstm {
        return Err(Error::Weights(format!(
            "{}: tensor '{hr_name}' (a projection) is only valid for LSTM weights",
            file.source
        )));
    }
    let mut num_layers = 1;
    if naming == Naming::Layer {
        while file.contains(&sfx("weight_ih", num_layers, false)) {
            num_layers += 1;
        }
    }
    Ok(RnnConfig {
        mode,
        input_size: w_ih[1],
        hidden_size: hidden,
        num_layers,
        bias: file.contains(&sfx("bias_ih", 0, false)) || file.contains(&sfx("bias_hh", 0, false)),
        batch_first: false,
        dropout: 0.0,
        bidirectional: naming == Naming::Layer && file.contains(&sfx("weight_ih", 0, true)),
        proj_size: proj,
        // Of the regularizers only layer norm has parameters (`ln_ih_weight_l0`, ...).
        regular: crate::core::config::Regularizers {
            layer_norm: file.contains(&sfx("ln_ih_weight", 0, false)),
            ..Default::default()
        },
        // Of the cell variants only peepholes have parameters (`weight_peephole_l0`).
        cell: crate::core::config::CellOptions {
            peepholes: mode == Mode::Lstm && file.contains(&sfx("weight_peephole", 0, false)),
            ..Default::default()
        },
    })
}

/// Reads every parameter of `layout` from `file` under prefix `p`, checking names, shapes and
/// types, and reporting every key under the prefix that the layout does not have.
fn gather_params<T: Real>(
    file: &TensorFile,
    p: &str,
    layout: &ParamLayout,
    cfg: &RnnConfig,
) -> Result<Vec<T>> {
    let mut problems = Vec::new();
    let mut params = vec![T::ZERO; layout.total()];
    for e in layout.entries() {
        let key = format!("{p}{}", e.name);
        match file.raw(&key) {
            None => problems.push(format!(
                "missing tensor '{key}' of shape {}",
                fmt_shape(&e.shape)
            )),
            Some(t) if !t.dtype.is_float() => problems.push(format!(
                "tensor '{key}' has dtype {}, expected a floating-point type",
                t.dtype_name
            )),
            Some(t) if t.shape != e.shape => problems.push(format!(
                "tensor '{key}' has shape {}, expected {}",
                fmt_shape(&t.shape),
                fmt_shape(&e.shape)
            )),
            Some(_) => {
                let v = file.float::<T>(&key)?;
                params[e.range()].copy_from_slice(v.data());
            }
        }
    }
    for name in file.names() {
        if let Some(rest) = name.strip_prefix(p) {
            if layout.get(rest).is_none() && looks_recurrent(rest) {
                problems.push(format!("unexpected tensor '{name}'"));
            }
        }
    }
    if problems.is_empty() {
        return Ok(params);
    }
    let shown = problems.len().min(6);
    let more = if problems.len() > shown {
        format!(" (and {} more)", problems.len() - shown)
    } else {
        String::new()
    };
    Err(Error::Weights(format!(
        "{}: these weights do not fit {} (inferred from the names and shapes): {}{more}",
        file.source,
        describe(cfg),
        problems[..shown].join("; ")
    )))
}

/// Names that belong to the recurrent module itself: everything directly under its prefix
/// (names with a further dot belong to other modules). PyTorch's `load_state_dict(strict=True)`
/// rejects any of them that is not a parameter.
fn looks_recurrent(rest: &str) -> bool {
    !rest.contains('.')
}

/// A one-line PyTorch-style description of a configuration.
pub fn describe(c: &RnnConfig) -> String {
    let module = match c.mode {
        Mode::Lstm => "LSTM",
        Mode::Gru => "GRU",
        _ => "RNN",
    };
    let mut s = format!("nn.{module}({}, {}", c.input_size, c.hidden_size);
    if c.num_layers != 1 {
        s += &format!(", num_layers={}", c.num_layers);
    }
    if c.mode == Mode::RnnRelu {
        s += ", nonlinearity='relu'";
    }
    if !c.bias {
        s += ", bias=False";
    }
    if c.batch_first {
        s += ", batch_first=True";
    }
    if c.bidirectional {
        s += ", bidirectional=True";
    }
    if c.proj_size > 0 {
        s += &format!(", proj_size={}", c.proj_size);
    }
    if c.cell.peepholes {
        s += ", peepholes=True";
    }
    s + ")"
}

/// Loads the `nn.RNN`/`nn.LSTM`/`nn.GRU` state_dict in `file`.
pub fn load_rnn<T: Real>(file: &TensorFile, opts: &LoadOptions) -> Result<Rnn<T>> {
    let p = resolve_prefix(file, opts, Naming::Layer)?;
    let mut cfg = infer_config(file, &p, Naming::Layer, opts.relu)?;
    cfg.batch_first = opts.batch_first;
    cfg.validate()
        .map_err(|e| Error::Weights(format!("{}: {e}", file.source)))?;
    let layout = ParamLayout::new(&cfg, Naming::Layer);
    let params = gather_params(file, &p, &layout, &cfg)?;
    Rnn::from_params(cfg, params)
}

/// Loads the `nn.RNNCell`/`nn.LSTMCell`/`nn.GRUCell` state_dict in `file`.
pub fn load_cell<T: Real>(file: &TensorFile, opts: &LoadOptions) -> Result<Cell<T>> {
    let p = resolve_prefix(file, opts, Naming::Cell)?;
    let cfg = infer_config(file, &p, Naming::Cell, opts.relu)?;
    cfg.validate()
        .map_err(|e| Error::Weights(format!("{}: {e}", file.source)))?;
    let layout = ParamLayout::new(&cfg, Naming::Cell);
    let params = gather_params(file, &p, &layout, &cfg)?;
    Cell::from_params(cfg.mode, cfg.input_size, cfg.hidden_size, cfg.bias, params)
}

/// Whether the weights in `file` (under `prefix`, or found) are those of a cell
/// (`weight_ih`) rather than a layer (`weight_ih_l0`).
pub fn is_cell(file: &TensorFile, prefix: Option<&str>) -> bool {
    let p = prefix.map(normalize_prefix);
    let has = |anchor: &str| match &p {
        Some(p) => file.contains(&format!("{p}{anchor}")),
        None => !find_prefix(file, anchor).is_empty(),
    };
    !has("weight_ih_l0") && has("weight_ih")
}

/// The state_dict of a model as named tensors (name with `prefix`, shape, values), in
/// PyTorch's registration order.
pub fn state_dict<'a, T: Real>(
    layout: &ParamLayout,
    params: &'a [T],
    prefix: &str,
) -> Vec<(String, Vec<usize>, &'a [T])> {
    let p = normalize_prefix(prefix);
    layout
        .entries()
        .iter()
        .map(|e| {
            (
                format!("{p}{}", e.name),
                e.shape.clone(),
                &params[e.range()],
            )
        })
        .collect()
}

/// Saves parameters as a PyTorch state_dict in f32 (`safetensors.torch.load_file` then
/// `load_state_dict(..., strict=True)` accepts it), under an optional module prefix.
pub fn save<T: Real>(
    layout: &ParamLayout,
    params: &[T],
    prefix: &str,
    path: impl AsRef<Path>,
) -> Result<()> {
    save_named(&state_dict(layout, params, prefix), path)
}

/// Writes named tensors (name, shape, values) to a safetensors file in f32, atomically, in
/// the given order.
pub fn save_named<T: Real>(
    tensors: &[(String, Vec<usize>, &[T])],
    path: impl AsRef<Path>,
) -> Result<()> {
    let vals: Vec<Vec<f32>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().map(|x| x.to_f64() as f32).collect())
        .collect();
    let out: Vec<(String, Vec<usize>, OutTensor<'_>)> = tensors
        .iter()
        .zip(&vals)
        .map(|((n, s, _), v)| (n.clone(), s.clone(), OutTensor::F32(v)))
        .collect();
    write_tensors(path, &out, &[])
}

/// A whole-model weights file read against the configuration it must fit: the recurrent stack
/// under a prefix, the other tensors by name and shape, and no tensor left over. Every error
/// names the file.
pub(crate) struct ModelFile {
    file: TensorFile,
}

impl ModelFile {
    pub(crate) fn read(path: impl AsRef<Path>) -> Result<ModelFile> {
        let mut file = TensorFile::read(path)?;
        file.dequantize_int8()?;
        Ok(ModelFile { file })
    }

    fn misfit(&self, m: String) -> Error {
        Error::Weights(format!(
            "{}: the weights do not fit the configuration: {m}",
            self.file.source()
        ))
    }

    /// The recurrent stack `prefix.*`, which must be `want` (dropout aside, which the weights
    /// do not record).
    pub(crate) fn stack<T: Real>(&self, prefix: &str, want: &RnnConfig) -> Result<Rnn<T>> {
        let relu = match want.mode {
            Mode::RnnTanh => Some(false),
            Mode::RnnRelu => Some(true),
            _ => None,
        };
        let opts = LoadOptions {
            prefix: Some(prefix.into()),
            relu,
            batch_first: want.batch_first,
        };
        let mut rnn = load_rnn::<T>(&self.file, &opts)?;
        // The regularizers without parameters are not in the weights: they come from `want`.
        if rnn.config().regular.layer_norm == want.regular.layer_norm {
            rnn.set_regularizers(want.regular.clone())?;
        }
        // So are the cell variants other than peepholes.
        if rnn.config().cell.peepholes == want.cell.peepholes && rnn.config().cell != want.cell {
            let cfg = rnn.config().clone().cell_options(want.cell.clone());
            rnn = Rnn::from_params(cfg, rnn.params().to_vec())?;
        }
        let mut want = want.clone();
        want.dropout = 0.0;
        if *rnn.config() != want {
            return Err(self.misfit(format!(
                "the recurrent layers are {}, expected {}",
                describe(rnn.config()),
                describe(&want)
            )));
        }
        Ok(rnn)
    }

    /// The tensor `name`, which must have `shape`.
    pub(crate) fn tensor<T: Real>(&self, name: &str, shape: &[usize]) -> Result<Vec<T>> {
        let t = self.file.float::<T>(name)?;
        if t.shape() != shape {
            return Err(self.misfit(format!(
                "tensor '{name}' has shape {}, expected {}",
                fmt_shape(t.shape()),
                fmt_shape(shape)
            )));
        }
        Ok(t.into_data())
    }

    /// An error if assembling the model failed, or if the file holds a tensor not in `known`.
    pub(crate) fn finish<M>(&self, model: Result<M>, known: &[String]) -> Result<M> {
        let model = model.map_err(|e| self.misfit(e.to_string()))?;
        if let Some(extra) = self.file.names().find(|n| !known.iter().any(|k| k == n)) {
            return Err(Error::Weights(format!(
                "{}: unexpected tensor '{extra}' (not a parameter of this model)",
                self.file.source()
            )));
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversions() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert_eq!(half_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(half_to_f32(0x7bff), 65504.0);
        assert!(half_to_f32(0x7c00).is_infinite());
    }
}
