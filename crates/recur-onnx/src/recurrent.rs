//! The ONNX `RNN`, `GRU` and `LSTM` operators (opsets 7 to 22), every attribute.
//!
//! Where the attributes reduce to PyTorch's semantics (default activations, or Relu for an
//! RNN; no `clip`; no peepholes; no `input_forget`; GRU `linear_before_reset = 1`; forward or
//! bidirectional; every sequence length at least 1) the node runs on recur's fast layers
//! ([`recur::Rnn`], gates reordered). The other attributes (GRU `linear_before_reset = 0`,
//! peepholes, `input_forget`, `clip`, any activations, per direction) run on recur's general
//! layer with the same cell variants ([`recur::core::config::CellOptions`], the layer recur
//! also trains), forward or bidirectional, when every sequence length is at least 1. What is
//! left, a `reverse`-only direction or a sequence of length 0, runs on [`general`], a direct
//! implementation of the ONNX equations in the graph's precision: the input projection of all
//! steps as one matrix product, then the time loop with one product per step.

use crate::error::{Error, Result};
use crate::reader::Node;
use crate::value::{fmt_shape, numel, DType, Data, Value};
use recur::core::config::{Activation, CellOptions};
use recur::{Mode, Real, Rnn, RnnConfig, State, Tensor};
use recur_kernels::gemm::{matmul, MatMut, MatRef, Par};

/// Which operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    Rnn,
    Gru,
    Lstm,
}

impl Cell {
    /// From the operator name.
    pub fn from_op(op: &str) -> Option<Cell> {
        match op {
            "RNN" => Some(Cell::Rnn),
            "GRU" => Some(Cell::Gru),
            "LSTM" => Some(Cell::Lstm),
            _ => None,
        }
    }
    /// Gate blocks in W and R.
    pub fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Gru => 3,
            Cell::Lstm => 4,
        }
    }
    /// Activations per direction (f, g, h).
    fn acts(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Gru => 2,
            Cell::Lstm => 3,
        }
    }
    fn default_acts(self) -> &'static [ActKind] {
        match self {
            Cell::Rnn => &[ActKind::Tanh],
            Cell::Gru => &[ActKind::Sigmoid, ActKind::Tanh],
            Cell::Lstm => &[ActKind::Sigmoid, ActKind::Tanh, ActKind::Tanh],
        }
    }
}

/// `direction`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
    Bidirectional,
}

impl Direction {
    fn count(self) -> usize {
        if self == Direction::Bidirectional {
            2
        } else {
            1
        }
    }
    /// Whether direction slot `d` runs backward in time.
    fn reverse(self, d: usize) -> bool {
        self == Direction::Reverse || d == 1
    }
}

/// The activation functions of the ONNX recurrent operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActKind {
    Relu,
    Tanh,
    Sigmoid,
    Affine,
    LeakyRelu,
    ThresholdedRelu,
    ScaledTanh,
    HardSigmoid,
    Elu,
    Softsign,
    Softplus,
}

impl ActKind {
    /// From its name (case-insensitive, as ONNX Runtime reads it).
    pub fn parse(s: &str) -> Option<ActKind> {
        Some(match s.to_ascii_lowercase().as_str() {
            "relu" => ActKind::Relu,
            "tanh" => ActKind::Tanh,
            "sigmoid" => ActKind::Sigmoid,
            "affine" => ActKind::Affine,
            "leakyrelu" => ActKind::LeakyRelu,
            "thresholdedrelu" => ActKind::ThresholdedRelu,
            "scaledtanh" => ActKind::ScaledTanh,
            "hardsigmoid" => ActKind::HardSigmoid,
            "elu" => ActKind::Elu,
            "softsign" => ActKind::Softsign,
            "softplus" => ActKind::Softplus,
            _ => return None,
        })
    }
    /// The defaults of (alpha, beta) when the attribute lists run out: those of the ONNX
    /// operator of the same name (Affine 1, 0; LeakyRelu 0.01; ThresholdedRelu 1; ScaledTanh
    /// 1, 1; HardSigmoid 0.2, 0.5; Elu 1), and whether the function takes alpha and beta.
    fn params(self) -> (Option<f64>, Option<f64>) {
        match self {
            ActKind::Affine => (Some(1.0), Some(0.0)),
            ActKind::LeakyRelu => (Some(0.01), None),
            ActKind::ThresholdedRelu => (Some(1.0), None),
            ActKind::ScaledTanh => (Some(1.0), Some(1.0)),
            ActKind::HardSigmoid => (Some(0.2), Some(0.5)),
            ActKind::Elu => (Some(1.0), None),
            _ => (None, None),
        }
    }
}

/// An activation with its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Act {
    pub kind: ActKind,
    pub alpha: f64,
    pub beta: f64,
}

impl Act {
    #[inline]
    fn apply<T: Real>(&self, x: T) -> T {
        let a = || T::from_f64(self.alpha);
        let b = || T::from_f64(self.beta);
        match self.kind {
            ActKind::Relu => x.relu(),
            ActKind::Tanh => x.tanh(),
            ActKind::Sigmoid => x.sigmoid(),
            ActKind::Affine => a() * x + b(),
            ActKind::LeakyRelu => {
                if x >= T::ZERO {
                    x
                } else {
                    a() * x
                }
            }
            ActKind::ThresholdedRelu => {
                if x > a() {
                    x
                } else {
                    T::ZERO
                }
            }
            ActKind::ScaledTanh => a() * (b() * x).tanh(),
            ActKind::HardSigmoid => {
                let v = a() * x + b();
                if v < T::ZERO {
                    T::ZERO
                } else if v > T::ONE {
                    T::ONE
                } else {
                    v
                }
            }
            ActKind::Elu => {
                if x >= T::ZERO {
                    x
                } else {
                    a() * (x.exp() - T::ONE)
                }
            }
            ActKind::Softsign => x / (T::ONE + x.abs()),
            ActKind::Softplus => {
                let v = x.to_f64();
                // log(1 + e^x) without overflow.
                T::from_f64(if v > 0.0 {
                    v + (-v).exp().ln_1p()
                } else {
                    v.exp().ln_1p()
                })
            }
        }
    }
}

/// The attributes of one recurrent node, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Attrs {
    pub cell: Cell,
    pub hidden_size: Option<usize>,
    pub direction: Direction,
    pub layout: usize,
    /// `acts()` per direction, flattened: direction d's activations are
    /// `acts[d * k .. (d + 1) * k]`.
    pub acts: Vec<Act>,
    pub clip: Option<f64>,
    pub input_forget: bool,
    pub linear_before_reset: bool,
}

impl Attrs {
    /// Reads and checks the attributes of `node` (an RNN, GRU or LSTM node).
    pub fn from_node(node: &Node, cell: Cell, opset: i64) -> Result<Attrs> {
        let l = node.label();
        let bad = |m: String| Error::Invalid(format!("{l}: {m}"));
        let unsup = |m: String| Error::Unsupported(format!("{l}: {m}"));
        let known: &[&str] = match cell {
            Cell::Rnn => &[
                "activation_alpha",
                "activation_beta",
                "activations",
                "clip",
                "direction",
                "hidden_size",
                "layout",
            ],
            Cell::Gru => &[
                "activation_alpha",
                "activation_beta",
                "activations",
                "clip",
                "direction",
                "hidden_size",
                "layout",
                "linear_before_reset",
            ],
            Cell::Lstm => &[
                "activation_alpha",
                "activation_beta",
                "activations",
                "clip",
                "direction",
                "hidden_size",
                "layout",
                "input_forget",
            ],
        };
        for name in node.attrs.keys() {
            if !known.contains(&name.as_str()) {
                return Err(unsup(format!(
                    "attribute '{name}' is not one of this operator's ({})",
                    known.join(", ")
                )));
            }
        }
        let hidden_size = match node.int("hidden_size")? {
            None => None,
            Some(h) if h > 0 => Some(h as usize),
            Some(h) => return Err(bad(format!("hidden_size must be positive, got {h}"))),
        };
        let direction = match node.str("direction")?.unwrap_or("forward") {
            "forward" => Direction::Forward,
            "reverse" => Direction::Reverse,
            "bidirectional" => Direction::Bidirectional,
            d => {
                return Err(bad(format!(
                    "direction must be forward, reverse or bidirectional, got '{d}'"
                )))
            }
        };
        let layout = match node.int("layout")?.unwrap_or(0) {
            0 => 0,
            1 if opset >= 14 => 1,
            1 => {
                return Err(bad(format!(
                    "layout = 1 needs opset 14 or later (the model has opset {opset})"
                )))
            }
            v => return Err(bad(format!("layout must be 0 or 1, got {v}"))),
        };
        let clip = match node.float("clip")? {
            None => None,
            Some(c) if c > 0.0 && c.is_finite() => Some(c as f64),
            Some(c) => return Err(bad(format!("clip must be a positive number, got {c}"))),
        };
        let input_forget = match node.int("input_forget")?.unwrap_or(0) {
            0 => false,
            1 => true,
            v => return Err(bad(format!("input_forget must be 0 or 1, got {v}"))),
        };
        let linear_before_reset = match node.int("linear_before_reset")?.unwrap_or(0) {
            0 => false,
            1 => true,
            v => return Err(bad(format!("linear_before_reset must be 0 or 1, got {v}"))),
        };
        let nd = direction.count();
        let k = cell.acts();
        let names: Vec<ActKind> = match node.strs("activations")? {
            None => (0..nd)
                .flat_map(|_| cell.default_acts().iter().copied())
                .collect(),
            Some(list) => {
                if list.len() != k * nd {
                    return Err(bad(format!(
                        "activations: expected {} function{} ({} per direction, {nd} direction{}), got {}",
                        k * nd,
                        if k * nd > 1 { "s" } else { "" },
                        k,
                        if nd > 1 { "s" } else { "" },
                        list.len()
                    )));
                }
                list.iter()
                    .map(|s| {
                        ActKind::parse(s).ok_or_else(|| {
                            unsup(format!(
                                "activation '{s}' is not supported (expected one of Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus)"
                            ))
                        })
                    })
                    .collect::<Result<_>>()?
            }
        };
        // alpha and beta are consumed in order by the functions that take them.
        let alphas = node.floats("activation_alpha")?.unwrap_or(&[]);
        let betas = node.floats("activation_beta")?.unwrap_or(&[]);
        let (mut ai, mut bi) = (0, 0);
        let mut acts = Vec::with_capacity(names.len());
        for kind in names {
            let (da, db) = kind.params();
            let mut alpha = 0.0;
            let mut beta = 0.0;
            if let Some(d) = da {
                alpha = alphas.get(ai).map_or(d, |&v| v as f64);
                ai += 1;
            }
            if let Some(d) = db {
                beta = betas.get(bi).map_or(d, |&v| v as f64);
                bi += 1;
            }
            acts.push(Act { kind, alpha, beta });
        }
        if ai < alphas.len() || bi < betas.len() {
            return Err(bad(format!(
                "activation_alpha/activation_beta hold {} and {} values, but the activations take only {} and {}",
                alphas.len(),
                betas.len(),
                ai.min(alphas.len()),
                bi.min(betas.len())
            )));
        }
        Ok(Attrs {
            cell,
            hidden_size,
            direction,
            layout,
            acts,
            clip,
            input_forget,
            linear_before_reset,
        })
    }

    /// Whether the activations are PyTorch's (tanh or relu RNN, sigmoid/tanh gates).
    fn pytorch_acts(&self) -> Option<Mode> {
        let kinds: Vec<ActKind> = self.acts.iter().map(|a| a.kind).collect();
        let k = self.cell.acts();
        let same_dirs = kinds.chunks(k).all(|c| c == &kinds[..k]);
        if !same_dirs {
            return None;
        }
        match self.cell {
            Cell::Rnn => match kinds[0] {
                ActKind::Tanh => Some(Mode::RnnTanh),
                ActKind::Relu => Some(Mode::RnnRelu),
                _ => None,
            },
            Cell::Gru => (kinds[..2] == [ActKind::Sigmoid, ActKind::Tanh]).then_some(Mode::Gru),
            Cell::Lstm => (kinds[..3] == [ActKind::Sigmoid, ActKind::Tanh, ActKind::Tanh])
                .then_some(Mode::Lstm),
        }
    }

    /// The recur mode when the weights-independent attributes reduce to PyTorch's semantics.
    pub fn fast_mode(&self) -> Option<Mode> {
        if self.clip.is_some()
            || self.input_forget
            || self.direction == Direction::Reverse
            || (self.cell == Cell::Gru && !self.linear_before_reset)
        {
            return None;
        }
        self.pytorch_acts()
    }
}

/// The inputs of a recurrent node (ONNX order: X, W, R, B, sequence_lens, initial_h,
/// initial_c, P).
pub struct Inputs<'a> {
    pub x: &'a Value,
    pub w: &'a Value,
    pub r: &'a Value,
    pub b: Option<&'a Value>,
    pub seq_lens: Option<&'a Value>,
    pub initial_h: Option<&'a Value>,
    pub initial_c: Option<&'a Value>,
    pub p: Option<&'a Value>,
}

/// The outputs: Y, Y_h and (LSTM) Y_c, in the node's layout.
pub struct Outputs {
    pub y: Value,
    pub y_h: Value,
    pub y_c: Option<Value>,
}

/// Sizes of one call.
#[derive(Clone, Copy, Debug)]
struct Dims {
    s: usize,
    b: usize,
    i: usize,
    h: usize,
    d: usize,
}

/// A fast layer prepared from constant weights, kept across runs.
#[derive(Clone, Debug)]
pub enum Fast {
    F32(Rnn<f32>),
    F64(Rnn<f64>),
}

fn floats<'a, T: Real>(v: &'a Value, what: &str, l: &str) -> Result<&'a [T]> {
    use std::any::Any;
    let any: Option<&dyn Any> = match &v.data {
        Data::F32(d) => Some(d),
        Data::F64(d) => Some(d),
        Data::Int(_) => None,
    };
    any.and_then(|a| a.downcast_ref::<Vec<T>>())
        .map(|v| v.as_slice())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{l}: input {what} has type {}, expected {} like X",
                v.dtype.name(),
                if T::DTYPE == "F32" { "float" } else { "double" }
            ))
        })
}

fn check_shape(v: &Value, want: &[usize], what: &str, l: &str) -> Result<()> {
    if v.shape != want {
        return Err(Error::Invalid(format!(
            "{l}: input {what} has shape {}, expected {}",
            fmt_shape(&v.shape),
            fmt_shape(want)
        )));
    }
    Ok(())
}

/// Shapes and lengths of a call, checked.
fn dims(a: &Attrs, inp: &Inputs<'_>, l: &str) -> Result<(Dims, Option<Vec<usize>>)> {
    let bad = |m: String| Error::Invalid(format!("{l}: {m}"));
    let g = a.cell.gates();
    let nd = a.direction.count();
    if inp.x.shape.len() != 3 {
        return Err(bad(format!(
            "input X must have 3 dimensions ({}), got shape {}",
            if a.layout == 0 {
                "seq_length, batch_size, input_size"
            } else {
                "batch_size, seq_length, input_size"
            },
            fmt_shape(&inp.x.shape)
        )));
    }
    let (s, b) = if a.layout == 0 {
        (inp.x.shape[0], inp.x.shape[1])
    } else {
        (inp.x.shape[1], inp.x.shape[0])
    };
    let i = inp.x.shape[2];
    if inp.w.shape.len() != 3
        || inp.w.shape[0] != nd
        || inp.w.shape[2] != i
        || !inp.w.shape[1].is_multiple_of(g)
        || inp.w.shape[1] == 0
    {
        return Err(bad(format!(
            "input W has shape {}, expected ({nd}, {g}*hidden_size, {i}) for direction {:?} and an input of size {i}",
            fmt_shape(&inp.w.shape),
            a.direction
        )));
    }
    let h = inp.w.shape[1] / g;
    if let Some(hs) = a.hidden_size {
        if hs != h {
            return Err(bad(format!(
                "hidden_size is {hs}, but W has shape {} (hidden size {h})",
                fmt_shape(&inp.w.shape)
            )));
        }
    }
    check_shape(inp.r, &[nd, g * h, h], "R", l)?;
    if let Some(bv) = inp.b {
        check_shape(bv, &[nd, 2 * g * h], "B", l)?;
    }
    if let Some(p) = inp.p {
        check_shape(p, &[nd, 3 * h], "P", l)?;
    }
    let state = if a.layout == 0 {
        [nd, b, h]
    } else {
        [b, nd, h]
    };
    if let Some(v) = inp.initial_h {
        check_shape(v, &state, "initial_h", l)?;
    }
    if let Some(v) = inp.initial_c {
        check_shape(v, &state, "initial_c", l)?;
    }
    numel(&[s, nd, b, h], &format!("{l}: output Y"))?;
    numel(&[s, b, g * h], &format!("{l}: input projection"))?;
    let lens = match inp.seq_lens {
        None => None,
        Some(v) => {
            let ints = v.ints("sequence_lens").map_err(|e| bad(e.to_string()))?;
            if v.shape != [b] {
                return Err(bad(format!(
                    "input sequence_lens has shape {}, expected ({b},) (one length per batch entry)",
                    fmt_shape(&v.shape)
                )));
            }
            let mut out = Vec::with_capacity(b);
            for (k, &len) in ints.iter().enumerate() {
                if len < 0 || len as u64 > s as u64 {
                    return Err(bad(format!(
                        "sequence_lens[{k}] is {len}, outside 0..={s} (the sequence length of X)"
                    )));
                }
                out.push(len as usize);
            }
            Some(out)
        }
    };
    Ok((Dims { s, b, i, h, d: nd }, lens))
}

/// Whether P is absent or all zeros (then it changes nothing).
fn no_peepholes(p: Option<&Value>) -> bool {
    p.is_none_or(|p| p.to_f64().iter().all(|&v| v == 0.0))
}

/// Whether this call may run on recur's fast layers.
pub fn fast_eligible(a: &Attrs, inp: &Inputs<'_>) -> bool {
    if a.fast_mode().is_none() || (a.cell == Cell::Lstm && !no_peepholes(inp.p)) {
        return false;
    }
    lengths_fit(a, inp)
}

/// Whether X has steps and every sequence length is at least 1 (recur's layers' domain).
fn lengths_fit(a: &Attrs, inp: &Inputs<'_>) -> bool {
    let s = if a.layout == 0 {
        inp.x.shape.first()
    } else {
        inp.x.shape.get(1)
    };
    if s.is_none_or(|&s| s == 0) || inp.x.is_empty() {
        return false;
    }
    match inp.seq_lens {
        None => true,
        Some(v) => v.to_i64().iter().all(|&l| l >= 1),
    }
}

impl Act {
    /// The same function in recur's core.
    fn to_core(self) -> Activation {
        let (alpha, beta) = (self.alpha, self.beta);
        match self.kind {
            ActKind::Relu => Activation::Relu,
            ActKind::Tanh => Activation::Tanh,
            ActKind::Sigmoid => Activation::Sigmoid,
            ActKind::Affine => Activation::Affine { alpha, beta },
            ActKind::LeakyRelu => Activation::LeakyRelu { alpha },
            ActKind::ThresholdedRelu => Activation::ThresholdedRelu { alpha },
            ActKind::ScaledTanh => Activation::ScaledTanh { alpha, beta },
            ActKind::HardSigmoid => Activation::HardSigmoid { alpha, beta },
            ActKind::Elu => Activation::Elu { alpha },
            ActKind::Softsign => Activation::Softsign,
            ActKind::Softplus => Activation::Softplus,
        }
    }
}

/// recur's general layer with the node's cell variants ([`CellOptions`]), for a node the fast
/// layers do not cover, where that layer has the node's semantics: forward or bidirectional
/// (not reverse only), every sequence length at least 1. `None` otherwise (then [`general`]
/// runs it).
#[allow(clippy::too_many_arguments)]
fn core_general<T: Real>(
    a: &Attrs,
    inp: &Inputs<'_>,
    w: &[T],
    r: &[T],
    b: Option<&[T]>,
    p: Option<&[T]>,
    dm: Dims,
) -> Option<Rnn<T>> {
    if a.direction == Direction::Reverse || !lengths_fit(a, inp) {
        return None;
    }
    let mode = match a.cell {
        Cell::Rnn => Mode::RnnTanh,
        Cell::Lstm => Mode::Lstm,
        Cell::Gru => Mode::Gru,
    };
    let cell = CellOptions {
        linear_before_reset: a.cell != Cell::Gru || a.linear_before_reset,
        peepholes: a.cell == Cell::Lstm && p.is_some(),
        input_forget: a.input_forget,
        clip: a.clip,
        activations: a.acts.iter().map(|x| x.to_core()).collect(),
    };
    let cfg = RnnConfig::new(mode, dm.i, dm.h)
        .bidirectional(dm.d == 2)
        .bias(b.is_some())
        .batch_first(a.layout == 1)
        .cell_options(cell);
    onnx_layer(cfg, a, w, r, b, p, dm.h, dm.i).ok()
}

/// PyTorch row block `k` holds ONNX block `perm[k]`.
fn gate_perm(cell: Cell) -> &'static [usize] {
    match cell {
        Cell::Rnn => &[0],
        // ONNX i, o, f, c -> PyTorch i, f, g, o
        Cell::Lstm => &[0, 2, 3, 1],
        // ONNX z, r, h -> PyTorch r, z, n
        Cell::Gru => &[1, 0, 2],
    }
}

/// A recur layer of configuration `cfg` with the ONNX weights W, R, B and P of a node (gate
/// rows reordered to PyTorch's; P's rows i, o, f to the layout's i, f, o).
#[allow(clippy::too_many_arguments)]
fn onnx_layer<T: Real>(
    cfg: RnnConfig,
    a: &Attrs,
    w: &[T],
    r: &[T],
    b: Option<&[T]>,
    p: Option<&[T]>,
    h: usize,
    i: usize,
) -> Result<Rnn<T>> {
    let g = a.cell.gates();
    let perm = gate_perm(a.cell);
    let reorder = |src: &[T], cols: usize| -> Vec<T> {
        let mut out = Vec::with_capacity(src.len());
        for &k in perm {
            out.extend_from_slice(&src[k * h * cols..(k + 1) * h * cols]);
        }
        out
    };
    let layout = recur::ParamLayout::new(&cfg, recur::Naming::Layer);
    let mut params = vec![T::ZERO; layout.total()];
    for e in layout.entries() {
        let d = usize::from(e.name.ends_with("_reverse"));
        let part: Vec<T> = if e.name.starts_with("weight_peephole") {
            // ONNX i, o, f -> i, f, o
            let pd = &p.expect("peepholes configured")[d * 3 * h..(d + 1) * 3 * h];
            [0, 2, 1]
                .iter()
                .flat_map(|&k| pd[k * h..(k + 1) * h].iter().copied())
                .collect()
        } else if e.name.starts_with("weight_ih") {
            reorder(&w[d * g * h * i..(d + 1) * g * h * i], i)
        } else if e.name.starts_with("weight_hh") {
            reorder(&r[d * g * h * h..(d + 1) * g * h * h], h)
        } else if e.name.starts_with("bias_ih") {
            let bb = b.expect("bias configured");
            reorder(&bb[d * 2 * g * h..d * 2 * g * h + g * h], 1)
        } else {
            let bb = b.expect("bias configured");
            reorder(&bb[d * 2 * g * h + g * h..(d + 1) * 2 * g * h], 1)
        };
        params[e.range()].copy_from_slice(&part);
    }
    Ok(Rnn::from_params(cfg, params)?)
}

/// Builds the fast layer for these weights (the attributes must be [`fast_eligible`]).
pub fn build_fast(a: &Attrs, w: &Value, r: &Value, b: Option<&Value>) -> Result<Fast> {
    fn build<T: Real>(
        a: &Attrs,
        w: &[T],
        r: &[T],
        b: Option<&[T]>,
        nd: usize,
        h: usize,
        i: usize,
    ) -> Result<Rnn<T>> {
        let mode = a.fast_mode().expect("fast mode checked");
        let cfg = RnnConfig::new(mode, i, h)
            .bidirectional(nd == 2)
            .bias(b.is_some())
            .batch_first(a.layout == 1);
        onnx_layer(cfg, a, w, r, b, None, h, i)
    }
    let l = "recurrent node";
    let g = a.cell.gates();
    let nd = a.direction.count();
    if w.shape.len() != 3 || w.shape[0] != nd || w.shape[1] == 0 || !w.shape[1].is_multiple_of(g) {
        return Err(Error::Invalid(format!(
            "{l}: W has shape {}",
            fmt_shape(&w.shape)
        )));
    }
    let h = w.shape[1] / g;
    let i = w.shape[2];
    check_shape(r, &[nd, g * h, h], "R", l)?;
    if let Some(b) = b {
        check_shape(b, &[nd, 2 * g * h], "B", l)?;
    }
    Ok(match w.dtype {
        DType::F64 => Fast::F64(build::<f64>(
            a,
            floats(w, "W", l)?,
            floats(r, "R", l)?,
            b.map(|b| floats(b, "B", l)).transpose()?,
            nd,
            h,
            i,
        )?),
        _ => Fast::F32(build::<f32>(
            a,
            floats(w, "W", l)?,
            floats(r, "R", l)?,
            b.map(|b| floats(b, "B", l)).transpose()?,
            nd,
            h,
            i,
        )?),
    })
}

/// Runs a recurrent node. `fast` is a layer prepared by [`build_fast`] for these weights, if
/// the caller keeps one.
pub fn run(node: &Node, a: &Attrs, inp: &Inputs<'_>, fast: Option<&Fast>) -> Result<Outputs> {
    let l = node.label();
    let (dm, lens) = dims(a, inp, &l)?;
    match inp.x.dtype {
        DType::F32 => run_t::<f32>(a, inp, dm, lens, fast, &l),
        DType::F64 => run_t::<f64>(a, inp, dm, lens, fast, &l),
        t => Err(Error::Invalid(format!(
            "{l}: input X has type {}, expected float or double",
            t.name()
        ))),
    }
}

fn wrap<T: Real>(shape: Vec<usize>, v: Vec<T>) -> Value {
    if T::DTYPE == "F64" {
        Value::f64(shape, v.into_iter().map(|x| x.to_f64()).collect())
    } else {
        Value::f32(shape, v.into_iter().map(|x| x.to_f64() as f32).collect())
    }
}

/// (B, D, H) → (D, B, H), or the identity for layout 0.
fn state_to_dbh<T: Real>(v: &[T], dm: Dims, layout: usize) -> Vec<T> {
    if layout == 0 {
        return v.to_vec();
    }
    let (b, d, h) = (dm.b, dm.d, dm.h);
    let mut out = vec![T::ZERO; v.len()];
    for bi in 0..b {
        for di in 0..d {
            out[(di * b + bi) * h..][..h].copy_from_slice(&v[(bi * d + di) * h..][..h]);
        }
    }
    out
}

/// (D, B, H) → the node's state layout.
fn state_from_dbh<T: Real>(v: Vec<T>, dm: Dims, layout: usize) -> (Vec<usize>, Vec<T>) {
    let (b, d, h) = (dm.b, dm.d, dm.h);
    if layout == 0 {
        return (vec![d, b, h], v);
    }
    let mut out = vec![T::ZERO; v.len()];
    for di in 0..d {
        for bi in 0..b {
            out[(bi * d + di) * h..][..h].copy_from_slice(&v[(di * b + bi) * h..][..h]);
        }
    }
    (vec![b, d, h], out)
}

fn run_t<T: Real>(
    a: &Attrs,
    inp: &Inputs<'_>,
    dm: Dims,
    lens: Option<Vec<usize>>,
    fast: Option<&Fast>,
    l: &str,
) -> Result<Outputs> {
    let x: &[T] = floats(inp.x, "X", l)?;
    let w: &[T] = floats(inp.w, "W", l)?;
    let r: &[T] = floats(inp.r, "R", l)?;
    let b = inp.b.map(|v| floats::<T>(v, "B", l)).transpose()?;
    let p = inp.p.map(|v| floats::<T>(v, "P", l)).transpose()?;
    let h0 = inp
        .initial_h
        .map(|v| floats::<T>(v, "initial_h", l))
        .transpose()?
        .map(|v| state_to_dbh(v, dm, a.layout));
    let c0 = inp
        .initial_c
        .map(|v| floats::<T>(v, "initial_c", l))
        .transpose()?
        .map(|v| state_to_dbh(v, dm, a.layout));
    let lstm = a.cell == Cell::Lstm;
    let core = if fast_eligible(a, inp) {
        None
    } else {
        core_general(a, inp, w, r, b, p, dm)
    };
    let (y, yh, yc) = if core.is_some() || fast_eligible(a, inp) {
        let built;
        let layer: &Rnn<T> = if let Some(l) = &core {
            l
        } else {
            let f = match fast {
                Some(f) => f,
                None => {
                    built = build_fast(a, inp.w, inp.r, inp.b)?;
                    &built
                }
            };
            match f {
                Fast::F32(rnn) => same_ref::<Rnn<f32>, Rnn<T>>(rnn),
                Fast::F64(rnn) => same_ref::<Rnn<f64>, Rnn<T>>(rnn),
            }
            .ok_or_else(|| Error::Invalid(format!("{l}: the weights and X differ in type")))?
        };
        let xs = if a.layout == 0 {
            vec![dm.s, dm.b, dm.i]
        } else {
            vec![dm.b, dm.s, dm.i]
        };
        let xt = Tensor::new(&xs, x.to_vec())?;
        let state = match (&h0, &c0) {
            (None, None) => None,
            (h, c) => Some(State {
                h: Tensor::new(
                    &[dm.d, dm.b, dm.h],
                    h.clone()
                        .unwrap_or_else(|| vec![T::ZERO; dm.d * dm.b * dm.h]),
                )?,
                c: if lstm {
                    Some(Tensor::new(
                        &[dm.d, dm.b, dm.h],
                        c.clone()
                            .unwrap_or_else(|| vec![T::ZERO; dm.d * dm.b * dm.h]),
                    )?)
                } else {
                    None
                },
            }),
        };
        let o = layer.forward(&xt, state.as_ref(), lens.as_deref())?;
        // recur's output is (S, B, D·H) or (B, S, D·H); ONNX's Y is (S, D, B, H) or (B, S, D, H).
        let out = o.output.into_data();
        let y = if a.layout == 0 && dm.d == 2 {
            let (s, b, d, h) = (dm.s, dm.b, dm.d, dm.h);
            let mut y = vec![T::ZERO; out.len()];
            for t in 0..s {
                for bi in 0..b {
                    for di in 0..d {
                        y[((t * d + di) * b + bi) * h..][..h]
                            .copy_from_slice(&out[((t * b + bi) * d + di) * h..][..h]);
                    }
                }
            }
            y
        } else {
            out
        };
        (y, o.h_n.into_data(), o.c_n.map(|c| c.into_data()))
    } else {
        // The general path works time-major: X (S, B, I).
        let xt: Vec<T> = if a.layout == 0 {
            x.to_vec()
        } else {
            let mut v = vec![T::ZERO; x.len()];
            for bi in 0..dm.b {
                for t in 0..dm.s {
                    v[(t * dm.b + bi) * dm.i..][..dm.i]
                        .copy_from_slice(&x[(bi * dm.s + t) * dm.i..][..dm.i]);
                }
            }
            v
        };
        let lens = lens.unwrap_or_else(|| vec![dm.s; dm.b]);
        let (y, yh, yc) = general(a, dm, &xt, w, r, b, p, &lens, h0.as_deref(), c0.as_deref());
        // (S, D, B, H) → (B, S, D, H) for layout 1.
        let y = if a.layout == 1 {
            let (s, b, d, h) = (dm.s, dm.b, dm.d, dm.h);
            let mut o = vec![T::ZERO; y.len()];
            for t in 0..s {
                for di in 0..d {
                    for bi in 0..b {
                        o[((bi * s + t) * d + di) * h..][..h]
                            .copy_from_slice(&y[((t * d + di) * b + bi) * h..][..h]);
                    }
                }
            }
            o
        } else {
            y
        };
        (y, yh, if lstm { Some(yc) } else { None })
    };
    let yshape = if a.layout == 0 {
        vec![dm.s, dm.d, dm.b, dm.h]
    } else {
        vec![dm.b, dm.s, dm.d, dm.h]
    };
    let (hs, yh) = state_from_dbh(yh, dm, a.layout);
    let y_c = yc.map(|c| {
        let (cs, c) = state_from_dbh(c, dm, a.layout);
        wrap(cs, c)
    });
    Ok(Outputs {
        y: wrap(yshape, y),
        y_h: wrap(hs, yh),
        y_c,
    })
}

fn same_ref<A: 'static, B: 'static>(a: &A) -> Option<&B> {
    (a as &dyn std::any::Any).downcast_ref::<B>()
}

#[inline]
fn clip<T: Real>(x: T, c: Option<T>) -> T {
    match c {
        None => x,
        Some(c) => {
            if x > c {
                c
            } else if x < -c {
                -c
            } else {
                x
            }
        }
    }
}

/// The ONNX equations, direction by direction. `x` is (S, B, I); `h0`, `c0` are (D, B, H).
/// Returns Y (S, D, B, H), Y_h and Y_c (D, B, H); outputs past a sequence's length are 0, and
/// the final states of a sequence of length 0 are 0 (as ONNX Runtime).
#[allow(clippy::too_many_arguments)]
fn general<T: Real>(
    a: &Attrs,
    dm: Dims,
    x: &[T],
    w: &[T],
    r: &[T],
    bias: Option<&[T]>,
    p: Option<&[T]>,
    lens: &[usize],
    h0: Option<&[T]>,
    c0: Option<&[T]>,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let Dims { s, b, i, h, d: nd } = dm;
    let g = a.cell.gates();
    let gh = g * h;
    let k = a.cell.acts();
    let cl = a.clip.map(T::from_f64);
    let lstm = a.cell == Cell::Lstm;
    let mut y = vec![T::ZERO; s * nd * b * h];
    let mut yh = vec![T::ZERO; nd * b * h];
    let mut yc = vec![T::ZERO; if lstm { nd * b * h } else { 0 }];
    let maxlen = lens.iter().copied().max().unwrap_or(0);
    for d in 0..nd {
        let reverse = a.direction.reverse(d);
        let acts = &a.acts[d * k..(d + 1) * k];
        let wd = &w[d * gh * i..(d + 1) * gh * i];
        let rd = &r[d * gh * h..(d + 1) * gh * h];
        let (wb, rb) = match bias {
            Some(bb) => (
                &bb[d * 2 * gh..d * 2 * gh + gh],
                &bb[d * 2 * gh + gh..(d + 1) * 2 * gh],
            ),
            None => (&[][..], &[][..]),
        };
        let pd = p.map(|p| &p[d * 3 * h..(d + 1) * 3 * h]);
        // Input projection of every step: (S·B, G·H), with the biases that sit outside any gate
        // product folded in.
        let mut xw = vec![T::ZERO; s * b * gh];
        if s * b > 0 && i > 0 {
            matmul(
                MatMut::new(&mut xw, s * b, gh),
                MatRef::new(x, s * b, i),
                MatRef::new(wd, gh, i).t(),
                false,
                Par::Threads,
            );
        }
        if bias.is_some() {
            let lbr_gru = a.cell == Cell::Gru && a.linear_before_reset;
            for row in xw.chunks_exact_mut(gh) {
                for (j, v) in row.iter_mut().enumerate() {
                    *v += wb[j];
                    if !(lbr_gru && j >= 2 * h) {
                        *v += rb[j];
                    }
                }
            }
        }
        let mut hs = match h0 {
            Some(h0) => h0[d * b * h..(d + 1) * b * h].to_vec(),
            None => vec![T::ZERO; b * h],
        };
        let mut cs = match (lstm, c0) {
            (true, Some(c0)) => c0[d * b * h..(d + 1) * b * h].to_vec(),
            _ => vec![T::ZERO; if lstm { b * h } else { 0 }],
        };
        let mut hr = vec![T::ZERO; b * gh];
        let mut rh = vec![T::ZERO; if a.cell == Cell::Gru { b * h } else { 0 }];
        let mut rhr = vec![T::ZERO; rh.len()];
        let mut zs = vec![T::ZERO; rh.len()];
        // Split a step's product between threads only when it is large enough to pay for it.
        let step_par = if b * gh * h >= 1 << 21 {
            Par::Threads
        } else {
            Par::Seq
        };
        for step in 0..maxlen {
            // The recurrent product of every row; for a GRU with linear_before_reset = 0 only
            // the z and r blocks here.
            let cols = if a.cell == Cell::Gru && !a.linear_before_reset {
                2 * h
            } else {
                gh
            };
            matmul(
                MatMut::strided(&mut hr, b, cols, gh),
                MatRef::new(&hs, b, h),
                MatRef::new(&rd[..cols * h], cols, h).t(),
                false,
                step_par,
            );
            let t_of = |bi: usize| if reverse { lens[bi] - 1 - step } else { step };
            match a.cell {
                Cell::Rnn => {
                    for bi in (0..b).filter(|&bi| step < lens[bi]) {
                        let t = t_of(bi);
                        let xr = &xw[(t * b + bi) * gh..][..gh];
                        let hrr = &hr[bi * gh..][..gh];
                        let hb = &mut hs[bi * h..][..h];
                        for j in 0..h {
                            hb[j] = acts[0].apply(clip(xr[j] + hrr[j], cl));
                        }
                        y[((t * nd + d) * b + bi) * h..][..h].copy_from_slice(hb);
                    }
                }
                Cell::Lstm => {
                    let (f, gf, hf) = (acts[0], acts[1], acts[2]);
                    for bi in (0..b).filter(|&bi| step < lens[bi]) {
                        let t = t_of(bi);
                        let xr = &xw[(t * b + bi) * gh..][..gh];
                        let hrr = &hr[bi * gh..][..gh];
                        let hb = &mut hs[bi * h..][..h];
                        let cb = &mut cs[bi * h..][..h];
                        for j in 0..h {
                            let pre = |gate: usize| xr[gate * h + j] + hrr[gate * h + j];
                            let c_prev = cb[j];
                            let (pi, po, pf) = match pd {
                                Some(pd) => (pd[j], pd[h + j], pd[2 * h + j]),
                                None => (T::ZERO, T::ZERO, T::ZERO),
                            };
                            let ig = f.apply(clip(pre(0) + pi * c_prev, cl));
                            let fg = if a.input_forget {
                                T::ONE - ig
                            } else {
                                f.apply(clip(pre(2) + pf * c_prev, cl))
                            };
                            let cg = gf.apply(clip(pre(3), cl));
                            let c_new = fg * c_prev + ig * cg;
                            let og = f.apply(clip(pre(1) + po * c_new, cl));
                            cb[j] = c_new;
                            hb[j] = og * hf.apply(c_new);
                        }
                        y[((t * nd + d) * b + bi) * h..][..h].copy_from_slice(hb);
                    }
                }
                Cell::Gru => {
                    let (f, gf) = (acts[0], acts[1]);
                    let rbh = if bias.is_some() {
                        &rb[2 * h..]
                    } else {
                        &[][..]
                    };
                    for bi in (0..b).filter(|&bi| step < lens[bi]) {
                        let t = t_of(bi);
                        let xr = &xw[(t * b + bi) * gh..][..gh];
                        let hrr = &hr[bi * gh..][..gh];
                        let hb = &hs[bi * h..][..h];
                        for j in 0..h {
                            let z = f.apply(clip(xr[j] + hrr[j], cl));
                            let rg = f.apply(clip(xr[h + j] + hrr[h + j], cl));
                            zs[bi * h + j] = z;
                            if a.linear_before_reset {
                                let rec =
                                    hrr[2 * h + j] + if rbh.is_empty() { T::ZERO } else { rbh[j] };
                                // the candidate, kept in rh until the state update below
                                rh[bi * h + j] = gf.apply(clip(xr[2 * h + j] + rg * rec, cl));
                            } else {
                                rh[bi * h + j] = rg * hb[j];
                            }
                        }
                    }
                    if !a.linear_before_reset {
                        // (r ⊙ h) · R_hᵀ for every row at once.
                        matmul(
                            MatMut::new(&mut rhr, b, h),
                            MatRef::new(&rh, b, h),
                            MatRef::new(&rd[2 * h * h..], h, h).t(),
                            false,
                            step_par,
                        );
                    }
                    for bi in (0..b).filter(|&bi| step < lens[bi]) {
                        let t = t_of(bi);
                        let xr = &xw[(t * b + bi) * gh..][..gh];
                        let hb = &mut hs[bi * h..][..h];
                        for j in 0..h {
                            let cand = if a.linear_before_reset {
                                rh[bi * h + j]
                            } else {
                                gf.apply(clip(xr[2 * h + j] + rhr[bi * h + j], cl))
                            };
                            let z = zs[bi * h + j];
                            hb[j] = (T::ONE - z) * cand + z * hb[j];
                        }
                        y[((t * nd + d) * b + bi) * h..][..h].copy_from_slice(hb);
                    }
                }
            }
        }
        for bi in 0..b {
            if lens[bi] > 0 {
                yh[(d * b + bi) * h..][..h].copy_from_slice(&hs[bi * h..][..h]);
                if lstm {
                    yc[(d * b + bi) * h..][..h].copy_from_slice(&cs[bi * h..][..h]);
                }
            }
        }
    }
    (y, yh, yc)
}
