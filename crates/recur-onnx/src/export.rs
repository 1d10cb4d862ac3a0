//! ONNX export: a PyTorch `nn.RNN` / `nn.LSTM` / `nn.GRU` ([`recur::Rnn`]) as a chain of ONNX
//! `RNN` / `LSTM` / `GRU` nodes, one per layer, that ONNX Runtime runs.
//!
//! Gates are reordered (PyTorch LSTM `i, f, g, o` → ONNX `i, o, f, c`; GRU `r, z, n` → `z, r,
//! h`), the two biases become `B = [b_ih ; b_hh]`, GRUs get `linear_before_reset = 1`
//! (PyTorch's form) and a relu RNN gets `activations = Relu`. The graph is time-major inside
//! (`layout = 0`, the only one ONNX Runtime's CPU provider runs); a batch-first model gets a
//! Transpose at its input and output. Between layers, `Y` (seq, D, batch, H) becomes the next
//! layer's input (seq, batch, D·H) by Transpose and Reshape.
//!
//! Graph inputs: `input`, and optionally `h0` (and `c0`), `lengths` (int32, one per sequence);
//! outputs `output`, `h_n` and (LSTM) `c_n`, shaped as PyTorch's.
//!
//! Not exportable: `proj_size > 0` (the ONNX LSTM has no projection) — an error says so.

use crate::error::{Error, Result};
use crate::proto::{
    attr_type, data_type, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, TypeTensor, ValueInfoProto,
};
use prost::Message;
use recur::core::config::{activation_count, Activation};
use recur::{Mode, Real, Rnn};

/// What the exported graph takes.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// `input` and `output` are (batch, seq, feature), as PyTorch's `batch_first = True`.
    pub batch_first: bool,
    /// The graph takes `h0` (and `c0` for an LSTM), (L·D, batch, H).
    pub initial_state: bool,
    /// The graph takes `lengths` (int32, one per sequence): ONNX's `sequence_lens`, with
    /// PyTorch's `PackedSequence` semantics.
    pub lengths: bool,
    /// The opset to declare (14 to 22; default 17).
    pub opset: i64,
    /// The element type of the graph: f32 (default) or f64.
    pub double: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            batch_first: false,
            initial_state: false,
            lengths: false,
            opset: 17,
            double: false,
        }
    }
}

/// One layer as ONNX tensors: W, R and B (ONNX gate order), ready for a recurrent node.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerWeights {
    /// `RNN`, `GRU` or `LSTM`.
    pub op: &'static str,
    pub num_directions: usize,
    pub hidden_size: usize,
    pub input_size: usize,
    /// (D, G·H, I), row-major.
    pub w: Vec<f64>,
    /// (D, G·H, H).
    pub r: Vec<f64>,
    /// (D, 2·G·H), or None without biases.
    pub b: Option<Vec<f64>>,
    /// The node's attributes besides hidden_size and direction: `linear_before_reset = 1`
    /// (GRU), `activations = Relu` (relu RNN).
    pub relu: bool,
}

/// ONNX block `k` holds PyTorch block `perm[k]`.
fn onnx_perm(mode: Mode) -> &'static [usize] {
    match mode {
        Mode::RnnTanh | Mode::RnnRelu => &[0],
        // PyTorch i, f, g, o -> ONNX i, o, f, c
        Mode::Lstm => &[0, 3, 1, 2],
        // PyTorch r, z, n -> ONNX z, r, h
        Mode::Gru => &[1, 0, 2],
    }
}

/// The ONNX weights of layer `layer` of `rnn` (the library call for one layer).
pub fn layer_weights<T: Real>(rnn: &Rnn<T>, layer: usize) -> Result<LayerWeights> {
    let c = rnn.config();
    if c.proj_size > 0 {
        return Err(Error::Unsupported(format!(
            "an LSTM with proj_size = {} cannot be exported: the ONNX LSTM operator has no projection (weight_hr)",
            c.proj_size
        )));
    }
    if layer >= c.num_layers {
        return Err(Error::Invalid(format!(
            "layer {layer}: the model has {} layers",
            c.num_layers
        )));
    }
    let nd = c.num_directions();
    let h = c.hidden_size;
    let i = c.layer_input_size(layer);
    let g = c.mode.gates();
    let perm = onnx_perm(c.mode);
    let (mut w, mut r) = (
        Vec::with_capacity(nd * g * h * i),
        Vec::with_capacity(nd * g * h * h),
    );
    let mut b = if c.bias {
        Some(Vec::with_capacity(nd * 2 * g * h))
    } else {
        None
    };
    for d in 0..nd {
        let sfx = if d == 1 { "_reverse" } else { "" };
        let get = |n: &str| {
            rnn.param(&format!("{n}_l{layer}{sfx}")).ok_or_else(|| {
                Error::Invalid(format!("the model has no parameter {n}_l{layer}{sfx}"))
            })
        };
        let push = |dst: &mut Vec<f64>, src: &[T], cols: usize| {
            for &k in perm {
                dst.extend(
                    src[k * h * cols..(k + 1) * h * cols]
                        .iter()
                        .map(|v| v.to_f64()),
                );
            }
        };
        push(&mut w, get("weight_ih")?, i);
        push(&mut r, get("weight_hh")?, h);
        if let Some(b) = b.as_mut() {
            push(b, get("bias_ih")?, 1);
            push(b, get("bias_hh")?, 1);
        }
    }
    Ok(LayerWeights {
        op: match c.mode {
            Mode::RnnTanh | Mode::RnnRelu => "RNN",
            Mode::Gru => "GRU",
            Mode::Lstm => "LSTM",
        },
        num_directions: nd,
        hidden_size: h,
        input_size: i,
        w,
        r,
        b,
        relu: c.mode == Mode::RnnRelu,
    })
}

fn tensor(name: &str, dims: &[usize], v: &[f64], double: bool) -> TensorProto {
    let mut t = TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        ..Default::default()
    };
    if double {
        t.data_type = data_type::DOUBLE;
        t.raw_data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    } else {
        t.data_type = data_type::FLOAT;
        t.raw_data = v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect();
    }
    t
}

fn ints(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![v.len() as i64],
        data_type: data_type::INT64,
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INT,
        i: v,
        ..Default::default()
    }
}
fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::STRING,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}
fn attr_is(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INTS,
        ints: v.to_vec(),
        ..Default::default()
    }
}
fn attr_f(name: &str, v: f64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::FLOAT,
        f: v as f32,
        ..Default::default()
    }
}
fn attr_fs(name: &str, v: &[f64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::FLOATS,
        floats: v.iter().map(|&x| x as f32).collect(),
        ..Default::default()
    }
}

/// ONNX's name of an activation and its α, β (those it takes).
fn onnx_activation(a: Activation) -> (&'static str, Option<f64>, Option<f64>) {
    match a {
        Activation::Relu => ("Relu", None, None),
        Activation::Tanh => ("Tanh", None, None),
        Activation::Sigmoid => ("Sigmoid", None, None),
        Activation::Affine { alpha, beta } => ("Affine", Some(alpha), Some(beta)),
        Activation::LeakyRelu { alpha } => ("LeakyRelu", Some(alpha), None),
        Activation::ThresholdedRelu { alpha } => ("ThresholdedRelu", Some(alpha), None),
        Activation::ScaledTanh { alpha, beta } => ("ScaledTanh", Some(alpha), Some(beta)),
        Activation::HardSigmoid { alpha, beta } => ("HardSigmoid", Some(alpha), Some(beta)),
        Activation::Elu { alpha } => ("Elu", Some(alpha), None),
        Activation::Softsign => ("Softsign", None, None),
        Activation::Softplus => ("Softplus", None, None),
    }
}

/// The attributes of a recurrent node for the cell variants of `c` (`RnnConfig::cell`):
/// `clip`, `input_forget`, and `activations` with `activation_alpha` / `activation_beta`
/// (each list holds the parameters of the functions that take one, in order).
fn variant_attrs(c: &recur::RnnConfig) -> Vec<AttributeProto> {
    let o = &c.cell;
    let mut attrs = Vec::new();
    if let Some(x) = o.clip {
        attrs.push(attr_f("clip", x));
    }
    if o.input_forget {
        attrs.push(attr_i("input_forget", 1));
    }
    if !o.activations.is_empty() {
        let n = activation_count(c.mode);
        let (mut names, mut alphas, mut betas) = (Vec::new(), Vec::new(), Vec::new());
        for d in 0..c.num_directions() {
            for &a in &o.activations_of(c.mode, d)[..n] {
                let (name, alpha, beta) = onnx_activation(a);
                names.push(name);
                alphas.extend(alpha);
                betas.extend(beta);
            }
        }
        attrs.push(attr_ss("activations", &names));
        if !alphas.is_empty() {
            attrs.push(attr_fs("activation_alpha", &alphas));
        }
        if !betas.is_empty() {
            attrs.push(attr_fs("activation_beta", &betas));
        }
    }
    attrs
}

/// ONNX's `P` (D, 3H) of a peephole LSTM layer, rows i, o, f (recur keeps i, f, o).
fn peepholes<T: Real>(rnn: &Rnn<T>, layer: usize) -> Result<Vec<f64>> {
    let c = rnn.config();
    let h = c.hidden_size;
    let mut p = Vec::with_capacity(c.num_directions() * 3 * h);
    for d in 0..c.num_directions() {
        let sfx = if d == 1 { "_reverse" } else { "" };
        let name = format!("weight_peephole_l{layer}{sfx}");
        let w = rnn
            .param(&name)
            .ok_or_else(|| Error::Invalid(format!("the model has no parameter {name}")))?;
        for k in [0, 2, 1] {
            p.extend(w[k * h..(k + 1) * h].iter().map(|v| v.to_f64()));
        }
    }
    Ok(p)
}

fn attr_ss(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::STRINGS,
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

fn value_info(name: &str, elem: i32, dims: &[&str]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeTensor {
                elem_type: elem,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| match d.parse::<i64>() {
                            Ok(v) => Dimension {
                                dim_value: Some(v),
                                dim_param: None,
                            },
                            Err(_) => Dimension {
                                dim_value: None,
                                dim_param: Some(d.to_string()),
                            },
                        })
                        .collect(),
                }),
            }),
        }),
        ..Default::default()
    }
}

/// The ONNX model of `rnn` as bytes.
pub fn export_rnn<T: Real>(rnn: &Rnn<T>, o: &ExportOptions) -> Result<Vec<u8>> {
    Ok(export_model(rnn, o)?.encode_to_vec())
}

fn check_opset(opset: i64) -> Result<()> {
    if !(14..=22).contains(&opset) {
        return Err(Error::Unsupported(format!(
            "opset {opset} : recur exports opsets 14 to 22"
        )));
    }
    Ok(())
}

/// A graph under construction: nodes, initializers, inputs and outputs.
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    double: bool,
}

impl Builder {
    fn new(double: bool) -> Builder {
        Builder {
            nodes: Vec::new(),
            inits: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            double,
        }
    }
    /// The graph's float element type.
    fn elem(&self) -> i32 {
        if self.double {
            data_type::DOUBLE
        } else {
            data_type::FLOAT
        }
    }
    /// A float initializer; returns its name.
    fn floats<R: Real>(&mut self, name: &str, dims: &[usize], v: &[R]) -> String {
        let v: Vec<f64> = v.iter().map(|x| x.to_f64()).collect();
        self.inits.push(tensor(name, dims, &v, self.double));
        name.to_string()
    }
    /// The transpose of a row-major (rows, cols) matrix as a (cols, rows) initializer.
    fn transposed<R: Real>(&mut self, name: &str, rows: usize, cols: usize, v: &[R]) -> String {
        let mut t = vec![0.0f64; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = v[r * cols + c].to_f64();
            }
        }
        self.floats(name, &[cols, rows], &t)
    }
    /// A 1-D int64 initializer.
    fn ints(&mut self, name: &str, v: &[i64]) -> String {
        self.inits.push(ints(name, v));
        name.to_string()
    }
    /// A scalar int64 initializer.
    fn int_scalar(&mut self, name: &str, v: i64) -> String {
        let mut t = ints(name, &[v]);
        t.dims.clear();
        self.inits.push(t);
        name.to_string()
    }
    /// A scalar float initializer.
    fn float_scalar(&mut self, name: &str, v: f64) -> String {
        self.inits.push(tensor(name, &[], &[v], self.double));
        name.to_string()
    }
    /// A node with one output, named `out`; returns `out`.
    fn op(&mut self, op: &str, out: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.nodes.push(node(op, out, inputs, &[out], attrs));
        out.to_string()
    }
    fn input(&mut self, name: &str, elem: i32, dims: &[&str]) {
        self.inputs.push(value_info(name, elem, dims));
    }
    fn output(&mut self, name: &str, elem: i32, dims: &[&str]) {
        self.outputs.push(value_info(name, elem, dims));
    }
    fn finish(self, name: &str, doc: String, opset: i64) -> ModelProto {
        let graph = GraphProto {
            node: self.nodes,
            name: name.into(),
            initializer: self.inits,
            doc_string: doc,
            input: self.inputs,
            output: self.outputs,
            value_info: vec![],
        };
        ModelProto {
            // IR version 8 goes with opsets up to 18, 10 with up to 22 (onnx.checker's table).
            ir_version: if opset <= 18 { 8 } else { 10 },
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: opset,
            }],
            producer_name: "recur".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(graph),
            ..Default::default()
        }
    }
}

/// The outputs of a recurrent stack in a graph.
struct Stack {
    /// (seq, batch, D·H): the last layer's outputs, time-major.
    y: String,
    /// Per layer, (D, batch, H): the final hidden states.
    h: Vec<String>,
    /// Per layer, (D, batch, H): the final cell states (LSTM).
    c: Vec<String>,
}

/// Adds `rnn`'s layers to `b`, one ONNX recurrent node each, over the time-major input `x`
/// (seq, batch, I): with `lengths` as every node's `sequence_lens`, and the initial states
/// sliced from `init` = (h0, c0), (L·D, batch, H), when given. Names start with `p`.
fn rnn_stack<T: Real>(
    b: &mut Builder,
    rnn: &Rnn<T>,
    p: &str,
    x: &str,
    lengths: Option<&str>,
    init: Option<(&str, Option<&str>)>,
) -> Result<Stack> {
    let c = rnn.config();
    let nd = c.num_directions();
    let h = c.hidden_size;
    let g = c.mode.gates();
    let lstm = c.mode == Mode::Lstm;
    let flatten = b.ints(&format!("{p}flatten_dirs"), &[0, 0, -1]);
    let mut x = x.to_string();
    let (mut yh, mut yc) = (Vec::new(), Vec::new());
    for l in 0..c.num_layers {
        let lw = layer_weights(rnn, l)?;
        let (wn, rn, bn) = (
            format!("{p}W_l{l}"),
            format!("{p}R_l{l}"),
            format!("{p}B_l{l}"),
        );
        b.floats(&wn, &[nd, g * h, lw.input_size], &lw.w);
        b.floats(&rn, &[nd, g * h, h], &lw.r);
        if let Some(bias) = &lw.b {
            b.floats(&bn, &[nd, 2 * g * h], bias);
        }
        let mut ins: Vec<String> = vec![
            x.clone(),
            wn,
            rn,
            if lw.b.is_some() { bn } else { String::new() },
            lengths.unwrap_or("").to_string(),
        ];
        if let Some((h0, c0)) = init {
            let s = b.ints(&format!("{p}state_start_l{l}"), &[(l * nd) as i64]);
            let e = b.ints(&format!("{p}state_end_l{l}"), &[((l + 1) * nd) as i64]);
            ins.push(b.op("Slice", &format!("{p}h0_l{l}"), &[h0, &s, &e], vec![]));
            if let Some(c0) = c0 {
                ins.push(b.op("Slice", &format!("{p}c0_l{l}"), &[c0, &s, &e], vec![]));
            }
        }
        if lstm && c.cell.peepholes {
            // X, W, R, B, sequence_lens, initial_h, initial_c, P
            ins.resize(7, String::new());
            let pn = format!("{p}P_l{l}");
            b.floats(&pn, &[nd, 3 * h], &peepholes(rnn, l)?);
            ins.push(pn);
        }
        while ins.last().is_some_and(|s| s.is_empty()) {
            ins.pop();
        }
        let mut attrs = vec![attr_i("hidden_size", h as i64)];
        if nd == 2 {
            attrs.push(attr_s("direction", "bidirectional"));
        }
        if c.mode == Mode::Gru {
            let lbr = i64::from(c.cell.linear_before_reset);
            attrs.push(attr_i("linear_before_reset", lbr));
        }
        if lw.relu && c.cell.activations.is_empty() {
            attrs.push(attr_ss("activations", &vec!["Relu"; nd]));
        }
        attrs.extend(variant_attrs(c));
        let (y, h_l, c_l) = (
            format!("{p}Y_l{l}"),
            format!("{p}Y_h_l{l}"),
            format!("{p}Y_c_l{l}"),
        );
        let mut outs = vec![y.as_str(), h_l.as_str()];
        if lstm {
            outs.push(c_l.as_str());
        }
        let ins_ref: Vec<&str> = ins.iter().map(|s| s.as_str()).collect();
        b.nodes.push(node(
            lw.op,
            &format!("{p}{}_l{l}", lw.op.to_lowercase()),
            &ins_ref,
            &outs,
            attrs,
        ));
        // (seq, D, batch, H) -> (seq, batch, D, H) -> (seq, batch, D·H)
        let t = b.op(
            "Transpose",
            &format!("{p}Y_l{l}_sbdh"),
            &[&y],
            vec![attr_is("perm", &[0, 2, 1, 3])],
        );
        x = b.op(
            "Reshape",
            &format!("{p}Y_l{l}_flat"),
            &[&t, &flatten],
            vec![],
        );
        yh.push(h_l);
        if lstm {
            yc.push(c_l);
        }
    }
    Ok(Stack { y: x, h: yh, c: yc })
}

/// The ONNX model of `rnn`.
pub fn export_model<T: Real>(rnn: &Rnn<T>, o: &ExportOptions) -> Result<ModelProto> {
    check_opset(o.opset)?;
    let c = rnn.config();
    let nl = c.num_layers;
    let nd = c.num_directions();
    let h = c.hidden_size;
    let lstm = c.mode == Mode::Lstm;
    let mut b = Builder::new(o.double);
    let elem = b.elem();
    let isz = c.input_size.to_string();
    let in_dims: [&str; 3] = if o.batch_first {
        ["batch", "seq", &isz]
    } else {
        ["seq", "batch", &isz]
    };
    b.input("input", elem, &in_dims);
    let ld = (nl * nd).to_string();
    let hs = h.to_string();
    if o.initial_state {
        b.input("h0", elem, &[&ld, "batch", &hs]);
        if lstm {
            b.input("c0", elem, &[&ld, "batch", &hs]);
        }
    }
    if o.lengths {
        b.input("lengths", data_type::INT32, &["batch"]);
    }
    let x = if o.batch_first {
        b.op(
            "Transpose",
            "x_tm",
            &["input"],
            vec![attr_is("perm", &[1, 0, 2])],
        )
    } else {
        "input".to_string()
    };
    let init = o
        .initial_state
        .then_some(("h0", if lstm { Some("c0") } else { None }));
    let st = rnn_stack(&mut b, rnn, "", &x, o.lengths.then_some("lengths"), init)?;
    let w = (nd * h).to_string();
    if o.batch_first {
        b.nodes.push(node(
            "Transpose",
            "output_to_batch_major",
            &[&st.y],
            &["output"],
            vec![attr_is("perm", &[1, 0, 2])],
        ));
    } else {
        b.nodes
            .push(node("Identity", "output", &[&st.y], &["output"], vec![]));
    }
    let yh_ref: Vec<&str> = st.h.iter().map(|s| s.as_str()).collect();
    b.op("Concat", "h_n", &yh_ref, vec![attr_i("axis", 0)]);
    b.output(
        "output",
        elem,
        &if o.batch_first {
            ["batch", "seq", w.as_str()]
        } else {
            ["seq", "batch", w.as_str()]
        },
    );
    b.output("h_n", elem, &[&ld, "batch", &hs]);
    if lstm {
        let yc_ref: Vec<&str> = st.c.iter().map(|s| s.as_str()).collect();
        b.op("Concat", "c_n", &yc_ref, vec![attr_i("axis", 0)]);
        b.output("c_n", elem, &[&ld, "batch", &hs]);
    }
    let doc = format!(
        "{} exported by recur: nn.{}({}, {}, num_layers={}, bias={}, batch_first={}, bidirectional={})",
        c.mode,
        match c.mode {
            Mode::Lstm => "LSTM",
            Mode::Gru => "GRU",
            _ => "RNN",
        },
        c.input_size,
        h,
        nl,
        if c.bias { "True" } else { "False" },
        if c.batch_first || o.batch_first { "True" } else { "False" },
        if c.bidirectional { "True" } else { "False" }
    );
    Ok(b.finish(&format!("recur_{}", c.mode), doc, o.opset))
}

// ---------------------------------------------------------------------------------------------
// Model directories

/// What a model directory is exported as.
#[derive(Clone, Debug, Default)]
pub struct ModelExportOptions {
    /// The opset to declare (14 to 22; [`ExportOptions`]'s default 17 when built by
    /// [`ModelExportOptions::new`]).
    pub opset: i64,
    /// Language models: the graph also takes the initial states `h0` (and `c0`), (L, batch,
    /// H), so that a client can stream by feeding `h_n` (and `c_n`) back. Without it the
    /// graph starts from zeros.
    pub initial_state: bool,
    /// The element type of the graph: f32 (false) or f64.
    pub double: bool,
}

impl ModelExportOptions {
    /// Opset 17, no initial states, f32.
    pub fn new() -> ModelExportOptions {
        ModelExportOptions {
            opset: 17,
            initial_state: false,
            double: false,
        }
    }
}

/// One ONNX graph of an exported model directory.
#[derive(Clone, Debug)]
pub struct ExportedGraph {
    /// The part of the model: `None` for a model exported as one graph; `Some("encoder")` and
    /// `Some("decoder")` for a sequence-to-sequence model.
    pub part: Option<&'static str>,
    /// The ONNX model.
    pub model: ModelProto,
}

impl ExportedGraph {
    /// The ONNX file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.model.encode_to_vec()
    }
}

/// An exported model directory.
#[derive(Clone, Debug)]
pub struct ExportedModel {
    /// What was exported, in one line (`classify: Embedding(30, 8) → nn.LSTM(...) ...`).
    pub description: String,
    /// The graphs: one, or the encoder and the decoder step of a sequence-to-sequence model.
    pub graphs: Vec<ExportedGraph>,
}

/// Refuses the recurrent layers ONNX's operators cannot express: layer normalization inside
/// the cell, zoneout (in evaluation `h = p·h_prev + (1-p)·h_new`). Dropout-like regularizers
/// (input, recurrent, weight and locked dropout) do nothing in evaluation and are fine.
fn check_exportable<T: Real>(rnn: &Rnn<T>, what: &str) -> Result<()> {
    let r = &rnn.config().regular;
    if r.layer_norm {
        return Err(Error::Unsupported(format!(
            "{what} uses layer normalization inside its recurrent cells, which the ONNX \
             RNN/GRU/LSTM operators cannot express; it cannot be exported: retrain it without \
             (recur train: --layer-norm=false)"
        )));
    }
    if r.zoneout_h > 0.0 || r.zoneout_c > 0.0 {
        return Err(Error::Unsupported(format!(
            "{what} uses zoneout (in evaluation each step mixes the old and new states), \
             which the ONNX RNN/GRU/LSTM operators cannot express; it cannot be exported"
        )));
    }
    Ok(())
}

/// `x` (…, in) · Wᵀ + bias for a Linear layer; returns the output's name.
fn linear<R: Real>(
    b: &mut Builder,
    name: &str,
    x: &str,
    l: &recur::nn::Linear<R>,
) -> Result<String> {
    let (i, o) = (l.in_features(), l.out_features());
    let w = b.transposed(&format!("{name}.weight_t"), o, i, l.weight());
    let y = b.op("MatMul", &format!("{name}_matmul"), &[x, &w], vec![]);
    Ok(match l.bias() {
        Some(bias) => {
            let bn = b.floats(&format!("{name}.bias"), &[o], bias);
            b.op("Add", &format!("{name}_out"), &[&y, &bn], vec![])
        }
        None => y,
    })
}

/// `Gather(weight, ids)`: the embeddings of `ids` (any shape) → (…, E).
fn embedding<R: Real>(
    b: &mut Builder,
    name: &str,
    ids: &str,
    e: &recur::nn::Embedding<R>,
) -> String {
    let w = b.floats(
        &format!("{name}.weight"),
        &[e.num_embeddings(), e.embedding_dim()],
        e.weight(),
    );
    b.op(
        "Gather",
        &format!("{name}_out"),
        &[&w, ids],
        vec![attr_i("axis", 0)],
    )
}

fn transpose(b: &mut Builder, out: &str, x: &str, perm: &[i64]) -> String {
    b.op("Transpose", out, &[x], vec![attr_is("perm", perm)])
}

/// (batch, steps) of booleans: step < length, for `lengths` (batch) int32 and the
/// sequences' axis `axis` of `like`.
fn step_mask(b: &mut Builder, p: &str, like: &str, axis: i64, lengths: &str) -> String {
    let shape = b.op("Shape", &format!("{p}shape"), &[like], vec![]);
    let ax = b.int_scalar(&format!("{p}steps_axis"), axis);
    let steps = b.op(
        "Gather",
        &format!("{p}steps"),
        &[&shape, &ax],
        vec![attr_i("axis", 0)],
    );
    let zero = b.int_scalar(&format!("{p}zero"), 0);
    let one = b.int_scalar(&format!("{p}one"), 1);
    let range = b.op(
        "Range",
        &format!("{p}positions"),
        &[&zero, &steps, &one],
        vec![],
    );
    let len64 = b.op(
        "Cast",
        &format!("{p}lengths_i64"),
        &[lengths],
        vec![attr_i("to", data_type::INT64 as i64)],
    );
    let ax1 = b.ints(&format!("{p}axis1"), &[1]);
    let lcol = b.op(
        "Unsqueeze",
        &format!("{p}lengths_col"),
        &[&len64, &ax1],
        vec![],
    );
    b.op("Less", &format!("{p}valid"), &[&range, &lcol], vec![])
}

/// Exports the model directory `dir` (any kind `recur train` writes).
pub fn export_model_dir(
    dir: impl AsRef<std::path::Path>,
    o: &ModelExportOptions,
) -> Result<ExportedModel> {
    check_opset(o.opset)?;
    let dir = dir.as_ref();
    let cfg = recur::models::read_config(dir)?;
    match cfg.kind {
        recur::models::ModelKind::CharLm => {
            // The weights and the configuration (the vocabulary, of characters or words, is
            // the client's tokenizer and not part of the graph).
            use recur::models::lm::{CharLm, CharLmConfig};
            let config = CharLmConfig::from_json(&cfg.json, &cfg.source)?;
            let m = CharLm::<f32>::load_weights(dir.join(recur::models::WEIGHTS_FILE), &config)?;
            export_lm(&m, o)
        }
        recur::models::ModelKind::SeqModel => {
            let m = recur::models::seqmodel::load_from::<f32>(dir, &cfg)?;
            export_seq_model(&m, o)
        }
        recur::models::ModelKind::Seq2seq => {
            let l = recur::models::seq2seq::load_from::<f32>(dir, &cfg)?;
            export_seq2seq(&l.model, o)
        }
    }
}

fn one_graph(description: String, model: ModelProto) -> ExportedModel {
    ExportedModel {
        description,
        graphs: vec![ExportedGraph { part: None, model }],
    }
}

/// A language model ([`recur::models::lm::CharLm`]): `tokens` (batch, seq) int64 [, `h0`,
/// `c0` (L, batch, H)] → `logits` (batch, seq, vocab), `h_n` [, `c_n`] (L, batch, H).
pub fn export_lm<T: Real>(
    m: &recur::models::lm::CharLm<T>,
    o: &ModelExportOptions,
) -> Result<ExportedModel> {
    check_opset(o.opset)?;
    let c = m.config();
    check_exportable(m.rnn(), "this language model")?;
    let lstm = c.mode == Mode::Lstm;
    let mut b = Builder::new(o.double);
    let elem = b.elem();
    let (l, h, v) = (
        c.num_layers.to_string(),
        c.hidden_size.to_string(),
        c.vocab_size.to_string(),
    );
    b.input("tokens", data_type::INT64, &["batch", "seq"]);
    if o.initial_state {
        b.input("h0", elem, &[&l, "batch", &h]);
        if lstm {
            b.input("c0", elem, &[&l, "batch", &h]);
        }
    }
    let x = embedding(&mut b, "embed", "tokens", m.embed());
    let x = transpose(&mut b, "embed_tm", &x, &[1, 0, 2]);
    let init = o
        .initial_state
        .then_some(("h0", if lstm { Some("c0") } else { None }));
    let st = rnn_stack(&mut b, m.rnn(), "rnn.", &x, None, init)?;
    let y = transpose(&mut b, "rnn_out_bm", &st.y, &[1, 0, 2]);
    let logits = linear(&mut b, "head", &y, m.head())?;
    b.op("Identity", "logits", &[&logits], vec![]);
    b.output("logits", elem, &["batch", "seq", &v]);
    let hr: Vec<&str> = st.h.iter().map(|s| s.as_str()).collect();
    b.op("Concat", "h_n", &hr, vec![attr_i("axis", 0)]);
    b.output("h_n", elem, &[&l, "batch", &h]);
    if lstm {
        let cr: Vec<&str> = st.c.iter().map(|s| s.as_str()).collect();
        b.op("Concat", "c_n", &cr, vec![attr_i("axis", 0)]);
        b.output("c_n", elem, &[&l, "batch", &h]);
    }
    let mut rc = m.rnn().config().clone();
    rc.batch_first = false;
    let description = format!(
        "language model: Embedding({}, {}) → {} → Linear({}, {})",
        c.vocab_size,
        c.embed_size,
        recur::io::state_dict::describe(&rc),
        c.hidden_size,
        c.vocab_size
    );
    let model = b.finish("recur_language_model", description.clone(), o.opset);
    Ok(one_graph(description, model))
}

/// A classifier, tagger or forecaster ([`recur::models::seqmodel::SeqModel`]): `tokens`
/// (batch, seq) int64 or `features` (batch, seq, F), and `lengths` (batch) int32 →
/// `logits` (cross-entropy models) or `predictions` (regression), (batch, out) per sequence
/// or (batch, seq, out) per step (zero past each sequence's length), as
/// [`recur::models::seqmodel::SeqModel::forward`].
pub fn export_seq_model<T: Real>(
    m: &recur::models::seqmodel::SeqModel<T>,
    o: &ModelExportOptions,
) -> Result<ExportedModel> {
    use recur::models::seqmodel::{Head, InputKind, Loss, Pooling};
    check_opset(o.opset)?;
    let c = m.config();
    check_exportable(m.rnn(), "this model")?;
    if o.initial_state {
        return Err(Error::Unsupported(
            "initial states: a classifier, tagger or forecaster always starts from zero states \
             (only a language model's graph takes h0/c0)"
                .into(),
        ));
    }
    let mut b = Builder::new(o.double);
    let elem = b.elem();
    let out_name = match c.loss {
        Loss::CrossEntropy => "logits",
        Loss::Mse => "predictions",
    };
    let x = match (c.input, m.embed()) {
        (InputKind::Tokens { .. }, Some(e)) => {
            b.input("tokens", data_type::INT64, &["batch", "seq"]);
            embedding(&mut b, "embed", "tokens", e)
        }
        (InputKind::Features { num_features }, _) => {
            b.input(
                "features",
                elem,
                &["batch", "seq", &num_features.to_string()],
            );
            match m.input_norm() {
                Some(n) => {
                    let mean = b.floats("input.mean", &[n.len()], &n.mean);
                    let std = b.floats("input.std", &[n.len()], &n.std);
                    let d = b.op("Sub", "features_centred", &["features", &mean], vec![]);
                    b.op("Div", "features_standardised", &[&d, &std], vec![])
                }
                None => "features".to_string(),
            }
        }
        (InputKind::Tokens { .. }, None) => {
            return Err(Error::Invalid(
                "a model of token ids without an embedding".into(),
            ))
        }
    };
    b.input("lengths", data_type::INT32, &["batch"]);
    let x = transpose(&mut b, "rnn_in_tm", &x, &[1, 0, 2]);
    let st = rnn_stack(&mut b, m.rnn(), "rnn.", &x, Some("lengths"), None)?;
    let os = c.output_size.to_string();
    let out = match c.head {
        Head::PerSequence(Pooling::Last) => {
            // The last layer's final states (D, batch, H) → (batch, D·H), forward then backward.
            let last = st.h.last().expect("at least one layer").clone();
            let t = transpose(&mut b, "last_state_bdh", &last, &[1, 0, 2]);
            let shape = b.ints("flatten_features", &[0, -1]);
            let feat = b.op("Reshape", "features_pooled", &[&t, &shape], vec![]);
            linear(&mut b, "head", &feat, m.head())?
        }
        Head::PerSequence(Pooling::Mean) => {
            // Σ over the valid steps (the recurrent outputs are zero past each length) / length.
            let axes = b.ints("time_axis", &[0]);
            let sum = b.op(
                "ReduceSum",
                "outputs_summed",
                &[&st.y, &axes],
                vec![attr_i("keepdims", 0)],
            );
            let lf = b.op(
                "Cast",
                "lengths_float",
                &["lengths"],
                vec![attr_i("to", elem as i64)],
            );
            let ax1 = b.ints("lengths_axis", &[1]);
            let lc = b.op("Unsqueeze", "lengths_col", &[&lf, &ax1], vec![]);
            let feat = b.op("Div", "features_pooled", &[&sum, &lc], vec![]);
            linear(&mut b, "head", &feat, m.head())?
        }
        Head::PerStep => {
            let y = transpose(&mut b, "rnn_out_bm", &st.y, &[1, 0, 2]);
            linear(&mut b, "head", &y, m.head())?
        }
    };
    let out = match m.target_norm() {
        Some(n) => {
            let std = b.floats("target.std", &[n.len()], &n.std);
            let mean = b.floats("target.mean", &[n.len()], &n.mean);
            let s = b.op("Mul", "predictions_scaled", &[&out, &std], vec![]);
            b.op("Add", "predictions_unstandardised", &[&s, &mean], vec![])
        }
        None => out,
    };
    if c.head == Head::PerStep {
        // Zero past each sequence's length, as recur's predictions.
        let valid = step_mask(&mut b, "mask_", "rnn_in_tm", 0, "lengths");
        let vf = b.op(
            "Cast",
            "mask_float",
            &[&valid],
            vec![attr_i("to", elem as i64)],
        );
        let ax2 = b.ints("mask_axis", &[2]);
        let v3 = b.op("Unsqueeze", "mask_3d", &[&vf, &ax2], vec![]);
        b.op("Mul", out_name, &[&out, &v3], vec![]);
        b.output(out_name, elem, &["batch", "seq", &os]);
    } else {
        b.op("Identity", out_name, &[&out], vec![]);
        b.output(out_name, elem, &["batch", &os]);
    }
    let description = m.describe();
    let model = b.finish("recur_seq_model", description.clone(), o.opset);
    Ok(one_graph(description, model))
}

/// A sequence-to-sequence model ([`recur::models::seq2seq::Seq2Seq`]) as two graphs: the
/// encoder and one decoder step (beam search and greedy decoding loop outside ONNX).
///
/// Encoder: `src` (batch, src_seq) int64, `src_lengths` (batch) int32 → `memory` (batch,
/// src_seq, H), `keys` (general attention only: `memory · W_aᵀ`), `h_n` [, `c_n`] (L, batch, H),
/// the decoder's initial state.
///
/// Decoder step: `tokens` (batch) int64 (the previous ids, `<bos>` first), `h0` [, `c0`]
/// (L, batch, H), and with attention `memory`, `keys` (general), `src_lengths` → `logits`
/// (batch, tgt_vocab) of the next id, `h_n` [, `c_n`].
pub fn export_seq2seq<T: Real>(
    m: &recur::models::seq2seq::Seq2Seq<T>,
    o: &ModelExportOptions,
) -> Result<ExportedModel> {
    use recur::models::seq2seq::Attention;
    check_opset(o.opset)?;
    let c = m.config();
    let parts = m.modules();
    check_exportable(&parts.encoder, "this encoder")?;
    check_exportable(&parts.decoder, "this decoder")?;
    if o.initial_state {
        return Err(Error::Unsupported(
            "initial states: the encoder starts from zero states, and the decoder step always \
             takes h0/c0 (the encoder's h_n/c_n)"
                .into(),
        ));
    }
    let lstm = c.mode == Mode::Lstm;
    let (l, h) = (c.num_layers.to_string(), c.hidden_size.to_string());
    let hsz = c.hidden_size;

    // The encoder.
    let mut b = Builder::new(o.double);
    let elem = b.elem();
    b.input("src", data_type::INT64, &["batch", "src_seq"]);
    b.input("src_lengths", data_type::INT32, &["batch"]);
    let x = embedding(&mut b, "src_embed", "src", &parts.src_embed);
    let x = transpose(&mut b, "src_embed_tm", &x, &[1, 0, 2]);
    let st = rnn_stack(
        &mut b,
        &parts.encoder,
        "encoder.",
        &x,
        Some("src_lengths"),
        None,
    )?;
    let memory = transpose(&mut b, "memory", &st.y, &[1, 0, 2]);
    b.output("memory", elem, &["batch", "src_seq", &h]);
    if let Some(attn) = &parts.attn {
        let k = linear(&mut b, "attn", &memory, attn)?;
        b.op("Identity", "keys", &[&k], vec![]);
        b.output("keys", elem, &["batch", "src_seq", &h]);
    }
    // The decoder's initial state: per layer, the two directions side by side.
    let bridge = |b: &mut Builder, states: &[String], what: &str| -> String {
        let layers: Vec<String> = if c.bidirectional {
            let flat = b.ints(&format!("bridge_{what}_shape"), &[0, -1]);
            let ax0 = b.ints(&format!("bridge_{what}_axis"), &[0]);
            states
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    let t = transpose(b, &format!("bridge_{what}_l{k}_bdh"), s, &[1, 0, 2]);
                    let r = b.op(
                        "Reshape",
                        &format!("bridge_{what}_l{k}_bh"),
                        &[&t, &flat],
                        vec![],
                    );
                    b.op(
                        "Unsqueeze",
                        &format!("bridge_{what}_l{k}"),
                        &[&r, &ax0],
                        vec![],
                    )
                })
                .collect()
        } else {
            states.to_vec()
        };
        let r: Vec<&str> = layers.iter().map(|s| s.as_str()).collect();
        b.op("Concat", &format!("{what}_n"), &r, vec![attr_i("axis", 0)])
    };
    bridge(&mut b, &st.h, "h");
    b.output("h_n", elem, &[&l, "batch", &h]);
    if lstm {
        bridge(&mut b, &st.c, "c");
        b.output("c_n", elem, &[&l, "batch", &h]);
    }
    let mut rc = parts.encoder.config().clone();
    rc.batch_first = false;
    let enc_doc = format!(
        "seq2seq encoder exported by recur: Embedding({}, {}) → {}{}",
        c.src_vocab_size,
        c.embed_size,
        recur::io::state_dict::describe(&rc),
        if c.bidirectional {
            " (final states of each layer's two directions side by side)"
        } else {
            ""
        }
    );
    let encoder = b.finish("recur_seq2seq_encoder", enc_doc, o.opset);

    // One decoder step.
    let mut b = Builder::new(o.double);
    b.input("tokens", data_type::INT64, &["batch"]);
    b.input("h0", elem, &[&l, "batch", &h]);
    if lstm {
        b.input("c0", elem, &[&l, "batch", &h]);
    }
    if c.attention != Attention::None {
        b.input("memory", elem, &["batch", "src_seq", &h]);
        if c.attention == Attention::General {
            b.input("keys", elem, &["batch", "src_seq", &h]);
        }
        b.input("src_lengths", data_type::INT32, &["batch"]);
    }
    let x = embedding(&mut b, "tgt_embed", "tokens", &parts.tgt_embed);
    let ax0 = b.ints("step_axis", &[0]);
    let x = b.op("Unsqueeze", "tgt_embed_step", &[&x, &ax0], vec![]);
    let init = Some(("h0", if lstm { Some("c0") } else { None }));
    let st = rnn_stack(&mut b, &parts.decoder, "decoder.", &x, None, init)?;
    let hs = b.op("Squeeze", "decoder_out", &[&st.y, &ax0], vec![]);
    let head_in = match &parts.attn_combine {
        None => hs,
        Some(combine) => {
            // score (batch, 1, src_seq) = h · keysᵀ, -inf past each source's length
            let keys = if c.attention == Attention::General {
                "keys"
            } else {
                "memory"
            };
            let ax1 = b.ints("query_axis", &[1]);
            let q = b.op("Unsqueeze", "query", &[&hs, &ax1], vec![]);
            let kt = transpose(&mut b, "keys_t", keys, &[0, 2, 1]);
            let score = b.op("MatMul", "score", &[&q, &kt], vec![]);
            let valid = step_mask(&mut b, "src_mask_", "memory", 1, "src_lengths");
            let v3 = b.op("Unsqueeze", "src_mask_3d", &[&valid, &ax1], vec![]);
            let ninf = b.float_scalar("minus_infinity", f64::NEG_INFINITY);
            let masked = b.op("Where", "score_masked", &[&v3, &score, &ninf], vec![]);
            let a = b.op("Softmax", "attention", &[&masked], vec![attr_i("axis", -1)]);
            let ctx = b.op("MatMul", "context_q", &[&a, "memory"], vec![]);
            let ctx = b.op("Squeeze", "context", &[&ctx, &ax1], vec![]);
            let cat = b.op(
                "Concat",
                "context_and_h",
                &[&ctx, &hs],
                vec![attr_i("axis", 1)],
            );
            let z = linear(&mut b, "attn_combine", &cat, combine)?;
            b.op("Tanh", "attentional", &[&z], vec![])
        }
    };
    let logits = linear(&mut b, "head", &head_in, &parts.head)?;
    b.op("Identity", "logits", &[&logits], vec![]);
    b.output("logits", elem, &["batch", &c.tgt_vocab_size.to_string()]);
    let hr: Vec<&str> = st.h.iter().map(|s| s.as_str()).collect();
    b.op("Concat", "h_n", &hr, vec![attr_i("axis", 0)]);
    b.output("h_n", elem, &[&l, "batch", &h]);
    if lstm {
        let cr: Vec<&str> = st.c.iter().map(|s| s.as_str()).collect();
        b.op("Concat", "c_n", &cr, vec![attr_i("axis", 0)]);
        b.output("c_n", elem, &[&l, "batch", &h]);
    }
    let mut rc = parts.decoder.config().clone();
    rc.batch_first = false;
    let dec_doc = format!(
        "seq2seq decoder step exported by recur: Embedding({}, {}) → {} → {} attention → \
         Linear({hsz}, {}); bos_id {}, eos_id {}",
        c.tgt_vocab_size,
        c.embed_size,
        recur::io::state_dict::describe(&rc),
        c.attention,
        c.tgt_vocab_size,
        c.bos_id,
        c.eos_id
    );
    let decoder = b.finish("recur_seq2seq_decoder_step", dec_doc, o.opset);
    Ok(ExportedModel {
        description: format!(
            "sequence-to-sequence model ({} encoder of {} layers, {} attention)",
            c.mode, c.num_layers, c.attention
        ),
        graphs: vec![
            ExportedGraph {
                part: Some("encoder"),
                model: encoder,
            },
            ExportedGraph {
                part: Some("decoder"),
                model: decoder,
            },
        ],
    })
}
