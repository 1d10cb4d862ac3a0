//! Reading an ONNX file: protobuf decoding (prost), then checks of everything recur relies
//! on, before any large allocation: tensor sizes against the bytes present and
//! [`MAX_ELEMENTS`](crate::value::MAX_ELEMENTS), opsets, attribute types, names.

use crate::error::{Error, Result};
use crate::proto::{self, attr_type, AttributeProto, TensorProto};
use crate::value::{fmt_shape, numel, DType, Data, Value};
use prost::Message;
use std::collections::HashMap;

/// The largest file recur reads (2 GiB, protobuf's own limit).
pub const MAX_FILE_BYTES: usize = (1 << 31) - 1;

/// The opsets of the default domain that recur runs.
pub const OPSETS: std::ops::RangeInclusive<i64> = 7..=22;

/// How deeply graphs may nest (a `Loop` body is one level below the graph that holds it).
pub const MAX_GRAPH_DEPTH: usize = 8;

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Float(f32),
    Int(i64),
    Str(String),
    Tensor(Value),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strs(Vec<String>),
    /// A sub-graph (the body of a `Loop`).
    Graph(Box<Graph>),
}

impl Attr {
    fn kind(&self) -> &'static str {
        match self {
            Attr::Float(_) => "a float",
            Attr::Int(_) => "an int",
            Attr::Str(_) => "a string",
            Attr::Tensor(_) => "a tensor",
            Attr::Floats(_) => "a list of floats",
            Attr::Ints(_) => "a list of ints",
            Attr::Strs(_) => "a list of strings",
            Attr::Graph(_) => "a graph",
        }
    }
}

/// A node of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The node's name (may be empty).
    pub name: String,
    /// Its operator.
    pub op: String,
    /// Input names; `""` for an absent optional input.
    pub inputs: Vec<String>,
    /// Output names; `""` for an output not wanted.
    pub outputs: Vec<String>,
    /// Attributes by name.
    pub attrs: HashMap<String, Attr>,
}

impl Node {
    /// `node 'name' (Op)` for messages.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            format!(
                "node {} ({})",
                self.outputs.first().map_or("?", |s| s.as_str()),
                self.op
            )
        } else {
            format!("node '{}' ({})", self.name, self.op)
        }
    }
    fn bad_type(&self, name: &str, want: &str, got: &Attr) -> Error {
        Error::Invalid(format!(
            "{}: attribute '{name}' must be {want}, got {}",
            self.label(),
            got.kind()
        ))
    }
    /// An int attribute.
    pub fn int(&self, name: &str) -> Result<Option<i64>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Int(v)) => Ok(Some(*v)),
            Some(a) => Err(self.bad_type(name, "an int", a)),
        }
    }
    /// A float attribute.
    pub fn float(&self, name: &str) -> Result<Option<f32>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Float(v)) => Ok(Some(*v)),
            Some(a) => Err(self.bad_type(name, "a float", a)),
        }
    }
    /// A string attribute.
    pub fn str(&self, name: &str) -> Result<Option<&str>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Str(v)) => Ok(Some(v)),
            Some(a) => Err(self.bad_type(name, "a string", a)),
        }
    }
    /// A list-of-ints attribute.
    pub fn ints(&self, name: &str) -> Result<Option<&[i64]>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v)),
            Some(a) => Err(self.bad_type(name, "a list of ints", a)),
        }
    }
    /// A list-of-floats attribute.
    pub fn floats(&self, name: &str) -> Result<Option<&[f32]>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Floats(v)) => Ok(Some(v)),
            Some(a) => Err(self.bad_type(name, "a list of floats", a)),
        }
    }
    /// A list-of-strings attribute.
    pub fn strs(&self, name: &str) -> Result<Option<&[String]>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Strs(v)) => Ok(Some(v)),
            Some(a) => Err(self.bad_type(name, "a list of strings", a)),
        }
    }
    /// A tensor attribute.
    pub fn tensor(&self, name: &str) -> Result<Option<&Value>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Tensor(v)) => Ok(Some(v)),
            Some(a) => Err(self.bad_type(name, "a tensor", a)),
        }
    }
    /// A graph attribute.
    pub fn graph(&self, name: &str) -> Result<Option<&Graph>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Graph(g)) => Ok(Some(g)),
            Some(a) => Err(self.bad_type(name, "a graph", a)),
        }
    }
    /// Input `k` if present and non-empty.
    pub fn input(&self, k: usize) -> Option<&str> {
        self.inputs
            .get(k)
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
    }
}

/// One dimension of a declared shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A named (dynamic) size, or an unknown one (empty name).
    Param(String),
}

/// A graph input or output as the graph declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct IoInfo {
    pub name: String,
    /// The element type; `None` if not declared or not a tensor type recur handles.
    pub dtype: Option<DType>,
    /// The raw `elem_type` number (to name unsupported types in messages).
    pub elem_type: i32,
    /// The declared shape, if any.
    pub shape: Option<Vec<Dim>>,
}

impl IoInfo {
    /// A description such as `float (seq, batch, 3)`.
    pub fn describe(&self) -> String {
        let t = self.dtype.map_or("tensor", |d| d.name());
        match &self.shape {
            None => t.to_string(),
            Some(s) => {
                let dims: Vec<String> = s
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => n.to_string(),
                        Dim::Param(p) if p.is_empty() => "?".into(),
                        Dim::Param(p) => p.clone(),
                    })
                    .collect();
                format!("{t} ({})", dims.join(", "))
            }
        }
    }
}

/// A decoded and checked model: the main graph, or a sub-graph (a `Loop` body, whose inputs
/// and outputs are the body's and which may use names of the graphs around it).
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    /// The default domain's opset.
    pub opset: i64,
    pub ir_version: i64,
    pub producer: String,
    pub nodes: Vec<Node>,
    pub initializers: HashMap<String, Value>,
    /// The graph inputs (initializers listed as inputs included).
    pub inputs: Vec<IoInfo>,
    pub outputs: Vec<IoInfo>,
}

/// Decodes and checks the bytes of an ONNX file; `source` names it in messages.
pub fn read_model(bytes: &[u8], source: &str) -> Result<Graph> {
    let bad = |m: String| Error::Malformed(format!("{source}: {m}"));
    if bytes.len() > MAX_FILE_BYTES {
        return Err(bad(format!(
            "the file has {} bytes, more than an ONNX protobuf may (2 GiB)",
            bytes.len()
        )));
    }
    let m = proto::ModelProto::decode(bytes).map_err(|e| {
        bad(format!(
            "not a valid ONNX model ({e}); is it truncated or of another format?"
        ))
    })?;
    let Some(g) = m.graph else {
        return Err(bad("not an ONNX model: it has no graph".into()));
    };
    if m.ir_version <= 0 {
        return Err(bad(format!(
            "not an ONNX model: ir_version is {} (missing)",
            m.ir_version
        )));
    }
    let mut opset = None;
    for o in &m.opset_import {
        match o.domain.as_str() {
            "" | "ai.onnx" => opset = Some(o.version),
            _ => {}
        }
    }
    let opset = match opset {
        Some(v) => v,
        // IR version 3 and up must declare it; older files mean opset 1.
        None => {
            return Err(bad(
                "the model imports no opset of the default domain".into()
            ))
        }
    };
    if !OPSETS.contains(&opset) {
        return Err(Error::Unsupported(format!(
            "{source}: opset {opset} of the default domain is not supported (recur runs opsets {} to {})",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    read_graph(&g, opset, m.ir_version, m.producer_name, source, 0)
}

/// Reads one graph (the model's, or a sub-graph `depth` levels below it).
fn read_graph(
    g: &proto::GraphProto,
    opset: i64,
    ir_version: i64,
    producer: String,
    source: &str,
    depth: usize,
) -> Result<Graph> {
    let bad = |m: String| Error::Malformed(format!("{source}: {m}"));
    let mut initializers = HashMap::new();
    for t in &g.initializer {
        if t.name.is_empty() {
            return Err(bad("an initializer has no name".into()));
        }
        let v = tensor_value(t).map_err(|e| bad(format!("initializer '{}': {e}", t.name)))?;
        initializers.insert(t.name.clone(), v);
    }
    let io = |v: &proto::ValueInfoProto| -> IoInfo {
        let tt = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
        IoInfo {
            name: v.name.clone(),
            dtype: tt.and_then(|t| DType::from_onnx(t.elem_type)),
            elem_type: tt.map_or(0, |t| t.elem_type),
            shape: tt.and_then(|t| t.shape.as_ref()).map(|s| {
                s.dim
                    .iter()
                    .map(|d| match (d.dim_value, &d.dim_param) {
                        (Some(v), _) if v >= 0 => Dim::Fixed(v as usize),
                        (_, Some(p)) => Dim::Param(p.clone()),
                        _ => Dim::Param(String::new()),
                    })
                    .collect()
            }),
        }
    };
    let inputs: Vec<IoInfo> = g.input.iter().map(io).collect();
    let outputs: Vec<IoInfo> = g.output.iter().map(io).collect();
    if outputs.is_empty() {
        return Err(bad("the graph has no output".into()));
    }
    let mut nodes = Vec::with_capacity(g.node.len());
    for (k, n) in g.node.iter().enumerate() {
        let label = if n.name.is_empty() {
            format!("node #{k} ({})", n.op_type)
        } else {
            format!("node '{}' ({})", n.name, n.op_type)
        };
        if !matches!(n.domain.as_str(), "" | "ai.onnx") {
            return Err(Error::Unsupported(format!(
                "{source}: {label}: operator {}::{} is not supported (recur runs only the default ONNX domain)",
                n.domain, n.op_type
            )));
        }
        let mut attrs = HashMap::new();
        for a in &n.attribute {
            let v = match (&a.g, a.r#type) {
                (Some(sub), 0 | attr_type::GRAPH) => {
                    if depth + 1 > MAX_GRAPH_DEPTH {
                        return Err(Error::Unsupported(format!(
                            "{source}: {label}: attribute '{}': graphs nested more than {MAX_GRAPH_DEPTH} deep",
                            a.name
                        )));
                    }
                    Attr::Graph(Box::new(read_graph(
                        sub,
                        opset,
                        ir_version,
                        String::new(),
                        source,
                        depth + 1,
                    )?))
                }
                _ => attr_value(a)
                    .map_err(|e| bad(format!("{label}: attribute '{}': {e}", a.name)))?,
            };
            attrs.insert(a.name.clone(), v);
        }
        nodes.push(Node {
            name: n.name.clone(),
            op: n.op_type.clone(),
            inputs: n.input.clone(),
            outputs: n.output.clone(),
            attrs,
        });
    }
    Ok(Graph {
        opset,
        ir_version,
        producer,
        nodes,
        initializers,
        inputs,
        outputs,
    })
}

fn attr_value(a: &AttributeProto) -> std::result::Result<Attr, String> {
    if !a.ref_attr_name.is_empty() {
        return Err("refers to a function attribute (only inside functions)".into());
    }
    let t = if a.r#type != 0 {
        a.r#type
    } else if !a.floats.is_empty() {
        attr_type::FLOATS
    } else if !a.ints.is_empty() {
        attr_type::INTS
    } else if !a.strings.is_empty() {
        attr_type::STRINGS
    } else if a.t.is_some() {
        attr_type::TENSOR
    } else if !a.s.is_empty() {
        attr_type::STRING
    } else if a.i != 0 {
        attr_type::INT
    } else {
        attr_type::FLOAT
    };
    let utf8 = |b: &[u8]| {
        String::from_utf8(b.to_vec()).map_err(|_| "a string that is not UTF-8".to_string())
    };
    Ok(match t {
        attr_type::FLOAT => Attr::Float(a.f),
        attr_type::INT => Attr::Int(a.i),
        attr_type::STRING => Attr::Str(utf8(&a.s)?),
        attr_type::TENSOR => Attr::Tensor(tensor_value(
            a.t.as_ref().ok_or("a tensor attribute without a tensor")?,
        )?),
        attr_type::FLOATS => Attr::Floats(a.floats.clone()),
        attr_type::INTS => Attr::Ints(a.ints.clone()),
        attr_type::STRINGS => Attr::Strs(
            a.strings
                .iter()
                .map(|s| utf8(s))
                .collect::<std::result::Result<_, _>>()?,
        ),
        attr_type::GRAPH => return Err("a graph attribute without a graph".into()),
        other => return Err(format!("attribute type {other} is not supported")),
    })
}

/// Converts a `TensorProto` to a [`Value`], checking its size against the data present.
pub fn tensor_value(t: &TensorProto) -> std::result::Result<Value, String> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        return Err("its data is in an external file, which recur does not read".into());
    }
    let dtype = DType::from_onnx(t.data_type).ok_or_else(|| {
        format!(
            "data type {} ({}) is not supported (recur handles float, double, the integer types and bool)",
            t.data_type,
            type_name(t.data_type)
        )
    })?;
    let mut shape = Vec::with_capacity(t.dims.len().min(64));
    if t.dims.len() > 64 {
        return Err(format!("{} dimensions (at most 64)", t.dims.len()));
    }
    for &d in &t.dims {
        if d < 0 {
            return Err(format!("negative dimension {d}"));
        }
        shape.push(usize::try_from(d).map_err(|_| format!("dimension {d} too large"))?);
    }
    let n = numel(&shape, "tensor").map_err(|e| e.to_string())?;
    let count_err = |have: usize, field: &str| {
        format!(
            "shape {} needs {n} values, but {field} holds {have}",
            fmt_shape(&shape)
        )
    };
    let size = dtype.size();
    if !t.raw_data.is_empty()
        || n == 0
            && t.float_data.is_empty()
            && t.int32_data.is_empty()
            && t.int64_data.is_empty()
            && t.double_data.is_empty()
            && t.uint64_data.is_empty()
    {
        let raw = &t.raw_data;
        if raw.len() != n * size {
            return Err(format!(
                "shape {} of {} needs {} bytes of raw_data, the file has {}",
                fmt_shape(&shape),
                dtype.name(),
                n * size,
                raw.len()
            ));
        }
        let data = match dtype {
            DType::F32 => Data::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            DType::F64 => Data::F64(
                raw.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            _ => Data::Int(raw.chunks_exact(size).map(|c| int_le(dtype, c)).collect()),
        };
        return Ok(Value { dtype, shape, data });
    }
    let data = match dtype {
        DType::F32 => {
            if t.float_data.len() != n {
                return Err(count_err(t.float_data.len(), "float_data"));
            }
            Data::F32(t.float_data.clone())
        }
        DType::F64 => {
            if t.double_data.len() != n {
                return Err(count_err(t.double_data.len(), "double_data"));
            }
            Data::F64(t.double_data.clone())
        }
        DType::I64 => {
            if t.int64_data.len() != n {
                return Err(count_err(t.int64_data.len(), "int64_data"));
            }
            Data::Int(t.int64_data.clone())
        }
        DType::U32 | DType::U64 => {
            if t.uint64_data.len() != n {
                return Err(count_err(t.uint64_data.len(), "uint64_data"));
            }
            Data::Int(
                t.uint64_data
                    .iter()
                    .map(|&v| dtype.wrap(v as i64))
                    .collect(),
            )
        }
        _ => {
            if t.int32_data.len() != n {
                return Err(count_err(t.int32_data.len(), "int32_data"));
            }
            Data::Int(t.int32_data.iter().map(|&v| dtype.wrap(v as i64)).collect())
        }
    };
    Ok(Value { dtype, shape, data })
}

fn int_le(dtype: DType, c: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b[..c.len()].copy_from_slice(c);
    let u = u64::from_le_bytes(b);
    match dtype {
        DType::I8 => c[0] as i8 as i64,
        DType::I16 => i16::from_le_bytes([c[0], c[1]]) as i64,
        DType::I32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
        DType::Bool => (c[0] != 0) as i64,
        _ => u as i64,
    }
}

/// The ONNX name of a data type number, for messages.
pub fn type_name(t: i32) -> &'static str {
    match t {
        1 => "float",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "double",
        12 => "uint32",
        13 => "uint64",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        0 => "undefined",
        _ => "float8 or newer",
    }
}
