//! `recur forward`: runs a PyTorch state_dict on inputs read from a safetensors file and writes
//! the outputs (and, when upstream gradients are given, every gradient) to another one.
//!
//! ```text
//! recur forward --weights W.safetensors --inputs X.safetensors --out Y.safetensors \
//!     [--prefix P] [--nonlinearity tanh|relu] [--batch-first] [--precision f32|f64]
//! ```
//!
//! - `W`: an `nn.RNN`/`nn.LSTM`/`nn.GRU` state_dict (`weight_ih_l0`, ...) or an
//!   `nn.RNNCell`/`nn.LSTMCell`/`nn.GRUCell` one (`weight_ih`, ...), possibly under a module
//!   prefix.
//! - `X`: `input` (float), optionally `h0`, `c0` (floats) and `lengths` (integers, layers
//!   only), and optionally the upstream gradients `grad_output`, `grad_h_n`, `grad_c_n`: any of
//!   them runs backpropagation through time as well.
//! - `Y`: `output`, `h_n`, `c_n` (LSTM) — for a cell, `output` and `h_n` are both h' and `c_n`
//!   is c' — and with gradients `grad.input`, `grad.h0`, `grad.c0` (LSTM) and
//!   `grad.<parameter>` for every parameter (PyTorch names, without the prefix).
//!
//! With an ONNX model as `--weights` (a `.onnx` file, or any file that is not safetensors),
//! X holds the graph's inputs under their ONNX names and Y receives every graph output under
//! its ONNX name (see `recur_onnx`).

use clap::Args as ClapArgs;
use recur::error::fmt_shape;
use recur::io::state_dict::{
    describe, is_cell, load_cell, load_rnn, write_tensors, LoadOptions, OutTensor, TensorFile,
};
use recur::{Cell, Mode, Real, Rnn, RnnConfig, State, Tensor};
use std::path::{Path, PathBuf};

/// Options of `recur forward`.
#[derive(ClapArgs)]
pub struct Args {
    /// The PyTorch state_dict (safetensors) of an nn.RNN/LSTM/GRU or of a cell, or an ONNX
    /// model (`.onnx`): then X holds the graph's inputs and Y gets its outputs, by ONNX name.
    #[arg(long, value_name = "W.safetensors|model.onnx")]
    weights: PathBuf,
    /// The inputs: `input`, and optionally `h0`, `c0`, `lengths`, `grad_output`, `grad_h_n`,
    /// `grad_c_n` (any gradient runs the backward pass too).
    #[arg(long, value_name = "X.safetensors")]
    inputs: PathBuf,
    /// Where to write `output`, `h_n`, `c_n` and the gradients `grad.*` (atomically).
    #[arg(long, value_name = "Y.safetensors")]
    out: PathBuf,
    /// The module prefix of the recurrent layer's keys in the weights (e.g. `encoder.rnn`);
    /// by default found from the keys when there is only one recurrent layer.
    #[arg(long, value_name = "P")]
    prefix: Option<String>,
    /// The nonlinearity of RNN weights (the weights do not say): `tanh` (PyTorch's default)
    /// or `relu`. Not for LSTM or GRU weights.
    #[arg(long, value_name = "tanh|relu")]
    nonlinearity: Option<String>,
    /// The input (and output) is (batch, seq, feature), as with PyTorch's `batch_first=True`.
    #[arg(long)]
    batch_first: bool,
    /// The precision of the computation and of the written tensors: `f32` (default) or `f64`.
    #[arg(long, value_name = "f32|f64", default_value = "f32")]
    precision: String,
}

/// The tensor names `--inputs` may hold.
const ACCEPTED: [&str; 7] = [
    "input",
    "h0",
    "c0",
    "lengths",
    "grad_output",
    "grad_h_n",
    "grad_c_n",
];

/// `--nonlinearity` of RNN weights (the weights do not say): `None` when not given.
pub(crate) fn parse_nonlinearity(v: Option<&str>) -> Result<Option<bool>, String> {
    match v {
        None => Ok(None),
        Some("tanh") => Ok(Some(false)),
        Some("relu") => Ok(Some(true)),
        Some(other) => Err(format!(
            "--nonlinearity: expected 'tanh' or 'relu', got '{other}'"
        )),
    }
}

/// `--precision f32|f64`: true for f64.
pub(crate) fn parse_precision(v: &str) -> Result<bool, String> {
    match v {
        "f32" => Ok(false),
        "f64" => Ok(true),
        other => Err(format!(
            "--precision: expected 'f32' or 'f64', got '{other}'"
        )),
    }
}

pub fn run(a: Args) -> Result<(), String> {
    if is_onnx(&a.weights) {
        return run_onnx(&a);
    }
    let relu = parse_nonlinearity(a.nonlinearity.as_deref())?;
    let f64_mode = parse_precision(&a.precision)?;
    let weights = TensorFile::read(&a.weights).map_err(|e| e.to_string())?;
    let inputs = TensorFile::read(&a.inputs).map_err(|e| e.to_string())?;
    let unknown: Vec<&str> = inputs.names().filter(|n| !ACCEPTED.contains(n)).collect();
    if !unknown.is_empty() {
        const SHOWN: usize = 6;
        let mut listed: Vec<String> = unknown
            .iter()
            .take(SHOWN)
            .map(|n| format!("'{n}'"))
            .collect();
        if unknown.len() > SHOWN {
            listed.push(format!("and {} more", unknown.len() - SHOWN));
        }
        return Err(format!(
            "{}: unexpected tensor{} {}; the accepted names are {}",
            inputs.source(),
            if unknown.len() > 1 { "s" } else { "" },
            listed.join(", "),
            ACCEPTED.join(", ")
        ));
    }
    if !inputs.contains("input") {
        let held: Vec<&str> = inputs.names().collect();
        return Err(format!(
            "{}: no tensor 'input' (the sequence to run); the file holds {}",
            inputs.source(),
            if held.is_empty() {
                "no tensors".to_string()
            } else {
                held.join(", ")
            }
        ));
    }
    let opts = LoadOptions {
        prefix: a.prefix.clone(),
        relu,
        batch_first: a.batch_first,
    };
    let job = Job {
        weights: &weights,
        inputs: &inputs,
        opts: &opts,
        cell: weights_are_cell(&weights, a.prefix.as_deref()),
        out: &a.out,
    };
    let summary = if f64_mode {
        job.run::<f64>()?
    } else {
        job.run::<f32>()?
    };
    println!("{summary}");
    Ok(())
}

/// Whether to load the weights as a cell. With a prefix that matches nothing, the kind found
/// elsewhere in the file decides, so that the loader's hint names the right prefix.
fn weights_are_cell(file: &TensorFile, prefix: Option<&str>) -> bool {
    if let Some(p) = prefix {
        let p = if p.is_empty() || p.ends_with('.') {
            p.to_string()
        } else {
            format!("{p}.")
        };
        if !file.contains(&format!("{p}weight_ih_l0")) && !file.contains(&format!("{p}weight_ih")) {
            return is_cell(file, None);
        }
    }
    is_cell(file, prefix)
}

struct Job<'a> {
    weights: &'a TensorFile,
    inputs: &'a TensorFile,
    opts: &'a LoadOptions,
    cell: bool,
    out: &'a Path,
}

/// A tensor to write, owned, in the computation's precision.
struct Named {
    name: String,
    shape: Vec<usize>,
    data: Data,
}

enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

fn named<T: Real>(name: impl Into<String>, shape: &[usize], v: &[T]) -> Named {
    let data = if T::DTYPE == "F64" {
        Data::F64(v.iter().map(|x| x.to_f64()).collect())
    } else {
        Data::F32(v.iter().map(|x| x.to_f64() as f32).collect())
    };
    Named {
        name: name.into(),
        shape: shape.to_vec(),
        data,
    }
}

fn tensor<T: Real>(name: &str, t: &Tensor<T>) -> Named {
    named(name, t.shape(), t.data())
}

impl Job<'_> {
    fn x(&self) -> &str {
        self.inputs.source()
    }

    /// The optional float tensor `name` of the inputs file.
    fn opt<T: Real>(&self, name: &str) -> Result<Option<Tensor<T>>, String> {
        if self.inputs.contains(name) {
            let t = self.inputs.float::<T>(name).map_err(|e| e.to_string())?;
            self.finite(name, &t)?;
            Ok(Some(t))
        } else {
            Ok(None)
        }
    }

    /// Rejects NaN and infinity in a tensor of the inputs file, saying where.
    fn finite<T: Real>(&self, name: &str, t: &Tensor<T>) -> Result<(), String> {
        match t.first_non_finite() {
            None => Ok(()),
            Some(idx) => {
                let at: Vec<String> = idx.iter().map(|i| i.to_string()).collect();
                Err(format!(
                    "{}: tensor '{name}' holds {} at index ({}); every value must be finite",
                    self.x(),
                    t.data()[t.data().iter().position(|v| !v.is_finite()).unwrap()],
                    at.join(", ")
                ))
            }
        }
    }

    fn wants_grad(&self) -> bool {
        ["grad_output", "grad_h_n", "grad_c_n"]
            .iter()
            .any(|n| self.inputs.contains(n))
    }

    /// An error about the inputs file, explained with the model it was given to.
    fn input_err(&self, model: &str, e: impl std::fmt::Display) -> String {
        format!(
            "{}: {e} (the weights in {} are {model})",
            self.x(),
            self.weights.source()
        )
    }

    /// Rejects a cell state or its gradient for a model without one.
    fn no_cell_state(&self, mode: Mode, model: &str) -> Result<(), String> {
        if mode == Mode::Lstm {
            return Ok(());
        }
        for n in ["c0", "grad_c_n"] {
            if self.inputs.contains(n) {
                return Err(format!(
                    "{}: tensor '{n}' was given, but {model} (from {}) has no cell state; only an LSTM has one",
                    self.x(),
                    self.weights.source()
                ));
            }
        }
        Ok(())
    }

    fn run<T: Real>(&self) -> Result<String, String> {
        let (model, input_shape, tensors) = if self.cell {
            self.run_cell::<T>()?
        } else {
            self.run_layer::<T>()?
        };
        let listed: Vec<(String, Vec<usize>, OutTensor<'_>)> = tensors
            .iter()
            .map(|t| {
                let data = match &t.data {
                    Data::F32(v) => OutTensor::F32(v),
                    Data::F64(v) => OutTensor::F64(v),
                };
                (t.name.clone(), t.shape.clone(), data)
            })
            .collect();
        write_tensors(self.out, &listed, &[("model", model.as_str())])
            .map_err(|e| e.to_string())?;
        let shown: Vec<String> = tensors
            .iter()
            .filter(|t| !t.name.starts_with("grad."))
            .map(|t| format!("{} {}", t.name, fmt_shape(&t.shape)))
            .collect();
        let grads = tensors
            .iter()
            .filter(|t| t.name.starts_with("grad."))
            .count();
        let grads = if grads > 0 {
            format!(", {grads} gradients")
        } else {
            String::new()
        };
        let prec = if T::DTYPE == "F64" { " in f64" } else { "" };
        Ok(format!(
            "{model} on input {}{prec}: wrote {}{grads} to {}",
            fmt_shape(&input_shape),
            shown.join(", "),
            self.out.display()
        ))
    }

    fn run_layer<T: Real>(&self) -> Result<(String, Vec<usize>, Vec<Named>), String> {
        let rnn: Rnn<T> = load_rnn(self.weights, self.opts).map_err(|e| e.to_string())?;
        let cfg: &RnnConfig = rnn.config();
        let model = describe(cfg);
        self.no_cell_state(cfg.mode, &model)?;
        let x: Tensor<T> = self.inputs.float("input").map_err(|e| e.to_string())?;
        self.finite("input", &x)?;
        let h0 = self.opt::<T>("h0")?;
        let c0 = self.opt::<T>("c0")?;
        let lengths = if self.inputs.contains("lengths") {
            Some(self.inputs.lengths("lengths").map_err(|e| e.to_string())?)
        } else {
            None
        };
        let state = match (h0, c0) {
            (None, None) => None,
            (Some(h), c) => Some(State { h, c }),
            (None, Some(c)) => {
                // c0 alone: h0 is zeros, shaped for the input's batch.
                let b = match x.shape().len() {
                    3 if cfg.batch_first => Some(x.shape()[0]),
                    3 => Some(x.shape()[1]),
                    _ => None,
                };
                Some(State {
                    h: Tensor::zeros(&rnn.state_shape(b, false)),
                    c: Some(c),
                })
            }
        };
        let mut out = Vec::new();
        if !self.wants_grad() {
            let o = rnn
                .forward(&x, state.as_ref(), lengths.as_deref())
                .map_err(|e| self.input_err(&model, e))?;
            out.push(tensor("output", &o.output));
            out.push(tensor("h_n", &o.h_n));
            if let Some(c) = &o.c_n {
                out.push(tensor("c_n", c));
            }
            return Ok((model, x.shape().to_vec(), out));
        }
        let g_out = self.opt::<T>("grad_output")?;
        let g_h = self.opt::<T>("grad_h_n")?;
        let g_c = self.opt::<T>("grad_c_n")?;
        let (o, tape) = rnn
            .forward_train(&x, state.as_ref(), lengths.as_deref(), recur::Dropout::Off)
            .map_err(|e| self.input_err(&model, e))?;
        let mut grads = rnn.zeros_like_params();
        let g = rnn
            .backward(
                &tape,
                g_out.as_ref(),
                g_h.as_ref(),
                g_c.as_ref(),
                &mut grads,
            )
            .map_err(|e| self.input_err(&model, e))?;
        out.push(tensor("output", &o.output));
        out.push(tensor("h_n", &o.h_n));
        if let Some(c) = &o.c_n {
            out.push(tensor("c_n", c));
        }
        out.push(tensor("grad.input", &g.input));
        out.push(tensor("grad.h0", &g.h0));
        if let Some(c) = &g.c0 {
            out.push(tensor("grad.c0", c));
        }
        for e in rnn.layout().entries() {
            out.push(named(
                format!("grad.{}", e.name),
                &e.shape,
                &grads[e.range()],
            ));
        }
        Ok((model, x.shape().to_vec(), out))
    }

    fn run_cell<T: Real>(&self) -> Result<(String, Vec<usize>, Vec<Named>), String> {
        let w = self.weights.source();
        if self.opts.batch_first {
            return Err(format!(
                "--batch-first: the weights in {w} are those of a cell, whose input is (batch, input_size); a cell has no batch_first"
            ));
        }
        let cell: Cell<T> = load_cell(self.weights, self.opts).map_err(|e| e.to_string())?;
        let cfg = cell.config();
        let model = describe(cfg).replacen('(', "Cell(", 1);
        self.no_cell_state(cfg.mode, &model)?;
        if self.inputs.contains("lengths") {
            return Err(format!(
                "{}: tensor 'lengths' applies to sequences (nn.RNN/LSTM/GRU), but the weights in {w} are those of {model}, which runs one step",
                self.x()
            ));
        }
        let x: Tensor<T> = self.inputs.float("input").map_err(|e| e.to_string())?;
        self.finite("input", &x)?;
        let (i, hsz) = (cfg.input_size, cfg.hidden_size);
        // Check the shapes here, with the names the file uses.
        let state_shape: Vec<usize> = match x.shape() {
            [n] if *n == i => vec![hsz],
            [b, n] if *n == i => vec![*b, hsz],
            s => {
                return Err(self.input_err(
                    &model,
                    format!(
                        "tensor 'input' has shape {}, expected (batch, {i}) or ({i},)",
                        fmt_shape(s)
                    ),
                ))
            }
        };
        let named_state = |n: &str| -> Result<Option<Tensor<T>>, String> {
            let t = self.opt::<T>(n)?;
            if let Some(t) = &t {
                if t.shape() != state_shape.as_slice() {
                    return Err(self.input_err(
                        &model,
                        format!(
                            "tensor '{n}' has shape {}, expected {} for an input of shape {}",
                            fmt_shape(t.shape()),
                            fmt_shape(&state_shape),
                            fmt_shape(x.shape())
                        ),
                    ));
                }
            }
            Ok(t)
        };
        let h0 = named_state("h0")?;
        let c0 = named_state("c0")?;
        let mut out = Vec::new();
        if !self.wants_grad() {
            let (h, c) = cell
                .forward(&x, h0.as_ref(), c0.as_ref())
                .map_err(|e| self.input_err(&model, e))?;
            out.push(tensor("output", &h));
            out.push(tensor("h_n", &h));
            if let Some(c) = &c {
                out.push(tensor("c_n", c));
            }
            return Ok((model, x.shape().to_vec(), out));
        }
        // `output` and `h_n` are both h': their gradients add up.
        let g_h = match (named_state("grad_output")?, named_state("grad_h_n")?) {
            (Some(a), Some(b)) => {
                let sum: Vec<T> = a
                    .data()
                    .iter()
                    .zip(b.data())
                    .map(|(&p, &q)| p + q)
                    .collect();
                Some(Tensor::new(a.shape(), sum).map_err(|e| e.to_string())?)
            }
            (a, b) => a.or(b),
        };
        let g_c = named_state("grad_c_n")?;
        let ((h, c), tape) = cell
            .forward_train(&x, h0.as_ref(), c0.as_ref())
            .map_err(|e| self.input_err(&model, e))?;
        let mut grads = cell.zeros_like_params();
        let g = cell
            .backward(&tape, g_h.as_ref(), g_c.as_ref(), &mut grads)
            .map_err(|e| self.input_err(&model, e))?;
        out.push(tensor("output", &h));
        out.push(tensor("h_n", &h));
        if let Some(c) = &c {
            out.push(tensor("c_n", c));
        }
        out.push(tensor("grad.input", &g.input));
        out.push(tensor("grad.h0", &g.h));
        if let Some(c) = &g.c {
            out.push(tensor("grad.c0", c));
        }
        for e in cell.layout().entries() {
            out.push(named(
                format!("grad.{}", e.name),
                &e.shape,
                &grads[e.range()],
            ));
        }
        Ok((model, x.shape().to_vec(), out))
    }
}

/// Whether `--weights` is an ONNX model: a `.onnx` file, or a file whose first bytes are not a
/// safetensors header (8 bytes of header length, then `{`) but a protobuf field.
fn is_onnx(path: &Path) -> bool {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        return true;
    }
    let mut head = [0u8; 9];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    use std::io::Read;
    let n = f.read(&mut head).unwrap_or(0);
    // A safetensors file starts with its header's length (little-endian u64) and '{'; an
    // ONNX model with field 1 (ir_version, varint: tag byte 0x08).
    !(n == 9 && head[8] == b'{') && n > 0 && head[0] == 0x08
}

/// `recur forward` on an ONNX model: graph inputs from X by name, every graph output to Y.
fn run_onnx(a: &Args) -> Result<(), String> {
    let w = a.weights.display();
    for (given, what) in [
        (a.prefix.is_some(), "--prefix"),
        (a.nonlinearity.is_some(), "--nonlinearity"),
        (a.batch_first, "--batch-first"),
        (a.precision != "f32", "--precision"),
    ] {
        if given {
            return Err(format!(
                "{what} applies to PyTorch weights; {w} is an ONNX model, whose graph says it (the computation runs in the graph's precision)"
            ));
        }
    }
    let model = recur_onnx::Model::read(&a.weights).map_err(|e| e.to_string())?;
    let feeds: std::collections::HashMap<String, recur_onnx::Value> =
        recur_onnx::io::read_safetensors(&a.inputs)
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
    let src = a.inputs.display().to_string();
    let outs = model.run(&feeds, &src).map_err(|e| e.to_string())?;
    recur_onnx::io::write_safetensors(&a.out, &outs).map_err(|e| e.to_string())?;
    let shown: Vec<String> = outs
        .iter()
        .map(|(n, v)| format!("{n} {}", fmt_shape(&v.shape)))
        .collect();
    println!(
        "ONNX model {w} ({} nodes): wrote {} to {}",
        model.graph().nodes.len(),
        shown.join(", "),
        a.out.display()
    );
    Ok(())
}
