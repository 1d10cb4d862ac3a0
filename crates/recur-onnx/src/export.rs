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

/// The ONNX model of `rnn`.
pub fn export_model<T: Real>(rnn: &Rnn<T>, o: &ExportOptions) -> Result<ModelProto> {
    if !(14..=22).contains(&o.opset) {
        return Err(Error::Unsupported(format!(
            "opset {} : recur exports opsets 14 to 22",
            o.opset
        )));
    }
    let c = rnn.config();
    let nl = c.num_layers;
    let nd = c.num_directions();
    let h = c.hidden_size;
    let lstm = c.mode == Mode::Lstm;
    let elem = if o.double {
        data_type::DOUBLE
    } else {
        data_type::FLOAT
    };
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let isz = c.input_size.to_string();
    let in_dims: [&str; 3] = if o.batch_first {
        ["batch", "seq", &isz]
    } else {
        ["seq", "batch", &isz]
    };
    let mut inputs = vec![value_info("input", elem, &in_dims)];
    let ld = (nl * nd).to_string();
    let hs = h.to_string();
    if o.initial_state {
        inputs.push(value_info("h0", elem, &[&ld, "batch", &hs]));
        if lstm {
            inputs.push(value_info("c0", elem, &[&ld, "batch", &hs]));
        }
    }
    if o.lengths {
        inputs.push(value_info("lengths", data_type::INT32, &["batch"]));
    }
    let mut x = "input".to_string();
    if o.batch_first {
        nodes.push(node(
            "Transpose",
            "input_to_time_major",
            &["input"],
            &["x_tm"],
            vec![attr_is("perm", &[1, 0, 2])],
        ));
        x = "x_tm".into();
    }
    inits.push(ints("flatten_dirs", &[0, 0, -1]));
    let mut yh = Vec::new();
    let mut yc = Vec::new();
    for l in 0..nl {
        let lw = layer_weights(rnn, l)?;
        let g = c.mode.gates();
        let (wn, rn, bn) = (format!("W_l{l}"), format!("R_l{l}"), format!("B_l{l}"));
        inits.push(tensor(&wn, &[nd, g * h, lw.input_size], &lw.w, o.double));
        inits.push(tensor(&rn, &[nd, g * h, h], &lw.r, o.double));
        if let Some(b) = &lw.b {
            inits.push(tensor(&bn, &[nd, 2 * g * h], b, o.double));
        }
        let mut ins: Vec<String> = vec![
            x.clone(),
            wn,
            rn,
            if lw.b.is_some() { bn } else { String::new() },
        ];
        ins.push(if o.lengths {
            "lengths".to_string()
        } else {
            String::new()
        });
        if o.initial_state {
            let (s, e) = (format!("state_start_l{l}"), format!("state_end_l{l}"));
            inits.push(ints(&s, &[(l * nd) as i64]));
            inits.push(ints(&e, &[((l + 1) * nd) as i64]));
            nodes.push(node(
                "Slice",
                &format!("h0_l{l}"),
                &["h0", &s, &e],
                &[&format!("h0_l{l}")],
                vec![],
            ));
            ins.push(format!("h0_l{l}"));
            if lstm {
                nodes.push(node(
                    "Slice",
                    &format!("c0_l{l}"),
                    &["c0", &s, &e],
                    &[&format!("c0_l{l}")],
                    vec![],
                ));
                ins.push(format!("c0_l{l}"));
            }
        }
        while ins.last().is_some_and(|s| s.is_empty()) {
            ins.pop();
        }
        let mut attrs = vec![attr_i("hidden_size", h as i64)];
        if nd == 2 {
            attrs.push(attr_s("direction", "bidirectional"));
        }
        if c.mode == Mode::Gru {
            attrs.push(attr_i("linear_before_reset", 1));
        }
        if lw.relu {
            attrs.push(attr_ss("activations", &vec!["Relu"; nd]));
        }
        let (y, h_l, c_l) = (format!("Y_l{l}"), format!("Y_h_l{l}"), format!("Y_c_l{l}"));
        let mut outs = vec![y.as_str(), h_l.as_str()];
        if lstm {
            outs.push(c_l.as_str());
        }
        let ins_ref: Vec<&str> = ins.iter().map(|s| s.as_str()).collect();
        nodes.push(node(
            lw.op,
            &format!("{}_l{l}", lw.op.to_lowercase()),
            &ins_ref,
            &outs,
            attrs,
        ));
        // (seq, D, batch, H) -> (seq, batch, D, H) -> (seq, batch, D·H)
        let (t, f) = (format!("Y_l{l}_sbdh"), format!("Y_l{l}_flat"));
        nodes.push(node(
            "Transpose",
            &t,
            &[&y],
            &[&t],
            vec![attr_is("perm", &[0, 2, 1, 3])],
        ));
        nodes.push(node("Reshape", &f, &[&t, "flatten_dirs"], &[&f], vec![]));
        x = f;
        yh.push(h_l);
        yc.push(c_l);
    }
    let w = (nd * h).to_string();
    if o.batch_first {
        nodes.push(node(
            "Transpose",
            "output_to_batch_major",
            &[&x],
            &["output"],
            vec![attr_is("perm", &[1, 0, 2])],
        ));
    } else {
        nodes.push(node("Identity", "output", &[&x], &["output"], vec![]));
    }
    let yh_ref: Vec<&str> = yh.iter().map(|s| s.as_str()).collect();
    nodes.push(node(
        "Concat",
        "h_n",
        &yh_ref,
        &["h_n"],
        vec![attr_i("axis", 0)],
    ));
    let mut outputs = vec![
        value_info(
            "output",
            elem,
            &if o.batch_first {
                ["batch", "seq", w.as_str()]
            } else {
                ["seq", "batch", w.as_str()]
            },
        ),
        value_info("h_n", elem, &[&ld, "batch", &hs]),
    ];
    if lstm {
        let yc_ref: Vec<&str> = yc.iter().map(|s| s.as_str()).collect();
        nodes.push(node(
            "Concat",
            "c_n",
            &yc_ref,
            &["c_n"],
            vec![attr_i("axis", 0)],
        ));
        outputs.push(value_info("c_n", elem, &[&ld, "batch", &hs]));
    }
    let graph = GraphProto {
        node: nodes,
        name: format!("recur_{}", c.mode),
        initializer: inits,
        doc_string: format!(
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
        ),
        input: inputs,
        output: outputs,
        value_info: vec![],
    };
    Ok(ModelProto {
        // IR version 8 goes with opsets up to 18, 10 with up to 22 (onnx.checker's table).
        ir_version: if o.opset <= 18 { 8 } else { 10 },
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: o.opset,
        }],
        producer_name: "recur".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    })
}
