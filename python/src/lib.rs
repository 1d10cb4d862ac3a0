//! `recur._native`: the Python extension. Arrays in (NumPy, f32 or f64), arrays out (NumPy,
//! owning recur's buffers, no copy). The GIL is released while recur computes; a panic inside
//! recur is caught and raised as `RuntimeError`, never unwound across the FFI boundary.

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::PyUntypedArrayMethods;
use numpy::{Element, IntoPyArray, PyReadonlyArrayDyn, PyUntypedArray};
use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use recur::core::regular::{LayerMasks, Masks};
use recur::io::state_dict::{load_rnn, LoadOptions, TensorFile};
use recur::{Dropout, Mode, Precision, Real, Rnn, RnnConfig, State, Stream, Tape, Tensor};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

create_exception!(
    _native,
    RecurError,
    PyValueError,
    "An input or configuration recur cannot use (shape, size, length, value, weights file)."
);

fn to_py_err(e: recur::Error) -> PyErr {
    match e {
        recur::Error::Io(m) => PyOSError::new_err(m),
        e @ recur::Error::File { .. } => PyOSError::new_err(e.to_string()),
        other => RecurError::new_err(other.to_string()),
    }
}

/// Runs `f` without the GIL, turning recur's errors and any panic into Python exceptions.
fn compute<R: Send>(py: Python<'_>, f: impl FnOnce() -> recur::Result<R> + Send) -> PyResult<R> {
    let r = py.detach(|| catch_unwind(AssertUnwindSafe(f)));
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_py_err(e)),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".into());
            Err(PyRuntimeError::new_err(format!(
                "recur internal error (please report): {msg}"
            )))
        }
    }
}

/// The dtype name of a NumPy array, for messages.
fn dtype_name(a: &Bound<'_, PyAny>) -> String {
    match a.cast::<PyUntypedArray>() {
        Ok(arr) => arr
            .dtype()
            .str()
            .map(|s| s.to_string())
            .unwrap_or_else(|_| "?".into()),
        Err(_) => format!(
            "a {} (not a NumPy array)",
            a.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ),
    }
}

/// Copies a NumPy array of element type `T` into a recur tensor (one pass, in logical order
/// whatever the strides).
fn tensor_from<T: Real + Element + Named>(a: &Bound<'_, PyAny>, what: &str) -> PyResult<Tensor<T>> {
    let arr: PyReadonlyArrayDyn<'_, T> = a.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what}: expected a NumPy array of {} (the model's dtype), got {}",
            T::NAME,
            dtype_name(a)
        ))
    })?;
    let shape = arr.shape().to_vec();
    // `as_slice` also accepts Fortran order; only a C-contiguous buffer is row-major.
    let data = match arr.as_slice() {
        Ok(s) if arr.is_c_contiguous() => s.to_vec(),
        _ => arr.as_array().iter().copied().collect(),
    };
    Tensor::new(&shape, data).map_err(to_py_err)
}

fn opt_tensor<T: Real + Element + Named>(
    a: Option<&Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<Option<Tensor<T>>> {
    match a {
        Some(a) if !a.is_none() => Ok(Some(tensor_from(a, what)?)),
        _ => Ok(None),
    }
}

/// Hands a recur tensor to NumPy without copying (the array owns the buffer).
fn to_array<'py, T: Real + Element>(py: Python<'py>, t: Tensor<T>) -> PyResult<Bound<'py, PyAny>> {
    let shape = t.shape().to_vec();
    let a = ArrayD::from_shape_vec(IxDyn(&shape), t.into_data())
        .map_err(|e| PyRuntimeError::new_err(format!("recur internal error: {e}")))?;
    Ok(a.into_pyarray(py).into_any())
}

trait Named {
    const NAME: &'static str;
}
impl Named for f32 {
    const NAME: &'static str = "float32";
}
impl Named for f64 {
    const NAME: &'static str = "float64";
}

/// A model in one of the two precisions.
#[derive(Clone)]
enum Model {
    F32(Arc<Rnn<f32>>),
    F64(Arc<Rnn<f64>>),
}

macro_rules! with_model {
    ($m:expr, $r:ident => $body:expr) => {
        match $m {
            Model::F32($r) => $body,
            Model::F64($r) => $body,
        }
    };
}

fn parse_dtype(dtype: &str) -> PyResult<bool> {
    match dtype {
        "float32" | "f32" => Ok(false),
        "float64" | "f64" => Ok(true),
        other => Err(PyTypeError::new_err(format!(
            "recur computes in float32 or float64, not {other}"
        ))),
    }
}

/// A stack of recurrent layers (`nn.RNN`/`nn.LSTM`/`nn.GRU`) with fixed parameters.
#[pyclass(frozen, name = "Rnn", module = "recur._native")]
struct PyRnn {
    model: Model,
}

fn build<T: Real + Element + Named>(
    cfg: RnnConfig,
    params: &[Bound<'_, PyAny>],
) -> PyResult<Rnn<T>> {
    cfg.validate().map_err(to_py_err)?;
    let layout = recur::ParamLayout::new(&cfg, recur::Naming::Layer);
    let entries = layout.entries();
    if params.len() != entries.len() {
        return Err(RecurError::new_err(format!(
            "expected {} parameter arrays ({}), got {}",
            entries.len(),
            entries
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            params.len()
        )));
    }
    let mut flat = Vec::with_capacity(layout.total());
    for (e, a) in entries.iter().zip(params) {
        let t: Tensor<T> = tensor_from(a, &e.name)?;
        if t.shape() != e.shape.as_slice() {
            return Err(RecurError::new_err(format!(
                "{}: expected shape {:?}, got {:?}",
                e.name,
                e.shape,
                t.shape()
            )));
        }
        flat.extend_from_slice(t.data());
    }
    Rnn::from_params(cfg, flat).map_err(to_py_err)
}

type ForwardOut<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Option<Bound<'py, PyAny>>,
    Option<PyTape>,
);

#[allow(clippy::too_many_arguments)]
fn forward_impl<'py, T: Real + Element + Named>(
    py: Python<'py>,
    rnn: &Arc<Rnn<T>>,
    x: &Bound<'py, PyAny>,
    h0: Option<&Bound<'py, PyAny>>,
    c0: Option<&Bound<'py, PyAny>>,
    lengths: Option<Vec<usize>>,
    masks: Option<Vec<Bound<'py, PyAny>>>,
    layer_masks: Option<Vec<Bound<'py, PyDict>>>,
    train: bool,
    wrap: fn(Arc<Rnn<T>>, Tape<T>) -> TapeInner,
) -> PyResult<ForwardOut<'py>> {
    let x: Tensor<T> = tensor_from(x, "input")?;
    let h0: Option<Tensor<T>> = opt_tensor(h0, "h0")?;
    let c0: Option<Tensor<T>> = opt_tensor(c0, "c0")?;
    let masks: Option<Vec<Tensor<T>>> = masks
        .map(|v| {
            v.iter()
                .enumerate()
                .map(|(i, m)| tensor_from(m, &format!("dropout mask {i}")))
                .collect::<PyResult<Vec<_>>>()
        })
        .transpose()?;
    let layer_masks: Option<Masks<T>> = layer_masks
        .map(|v| {
            v.iter()
                .enumerate()
                .map(|(l, d)| layer_masks_from(d, l))
                .collect::<PyResult<Vec<_>>>()
                .map(|layers| Masks { layers })
        })
        .transpose()?;
    if masks.is_some() && layer_masks.is_some() {
        return Err(RecurError::new_err(
            "give either masks (dropout between layers) or layer_masks (every regularizer's), not both",
        ));
    }
    let state = match (h0, c0) {
        (None, None) => None,
        (Some(h), c) => Some(State { h, c }),
        (None, Some(_)) => {
            return Err(RecurError::new_err(
                "c0 was given without h0: give both or neither",
            ))
        }
    };
    let m = rnn.clone();
    let (out, tape) = compute(py, move || {
        let drop = match &masks {
            Some(v) => Dropout::Masks(v),
            None => Dropout::Off,
        };
        if let Some(lm) = &layer_masks {
            // Training mode of the regularized layers; the tape is dropped when not wanted.
            let (o, t) = m.forward_train_masked(&x, state.as_ref(), lengths.as_deref(), lm)?;
            Ok((o, train.then_some(t)))
        } else if train {
            let (o, t) = m.forward_train(&x, state.as_ref(), lengths.as_deref(), drop)?;
            Ok((o, Some(t)))
        } else if masks.is_some() {
            // Training-mode dropout without a tape (e.g. under torch.no_grad()).
            let (o, _) = m.forward_train(&x, state.as_ref(), lengths.as_deref(), drop)?;
            Ok((o, None))
        } else {
            Ok((m.forward(&x, state.as_ref(), lengths.as_deref())?, None))
        }
    })?;
    let c_n = out.c_n.map(|c| to_array(py, c)).transpose()?;
    Ok((
        to_array(py, out.output)?,
        to_array(py, out.h_n)?,
        c_n,
        tape.map(|t| PyTape {
            inner: wrap(rnn.clone(), t),
        }),
    ))
}

/// One layer's masks from a dict with the keys `input` (B, I), `recurrent` (B, H),
/// `weight_hh` (G·H, H), `zoneout_h`, `zoneout_c` (T, B, H) and `output` ((B, H) when locked,
/// else (T, B, H)); a missing key or None is no mask.
fn layer_masks_from<T: Real + Element + Named>(
    d: &Bound<'_, PyDict>,
    l: usize,
) -> PyResult<LayerMasks<T>> {
    const KEYS: [&str; 6] = [
        "input",
        "recurrent",
        "weight_hh",
        "zoneout_h",
        "zoneout_c",
        "output",
    ];
    for k in d.keys() {
        let k: String = k.extract()?;
        if !KEYS.contains(&k.as_str()) {
            return Err(RecurError::new_err(format!(
                "layer_masks[{l}]: unknown mask '{k}' (expected one of {})",
                KEYS.join(", ")
            )));
        }
    }
    let get = |k: &str| -> PyResult<Option<Vec<T>>> {
        match d.get_item(k)? {
            Some(a) if !a.is_none() => Ok(Some(
                tensor_from::<T>(&a, &format!("{k} mask of layer {l}"))?.into_data(),
            )),
            _ => Ok(None),
        }
    };
    Ok(LayerMasks {
        input: get("input")?,
        recurrent: get("recurrent")?,
        weight_hh: get("weight_hh")?,
        zoneout_h: get("zoneout_h")?,
        zoneout_c: get("zoneout_c")?,
        output: get("output")?,
    })
}

#[pymethods]
impl PyRnn {
    /// `Rnn(mode, input_size, hidden_size, num_layers, bias, batch_first, bidirectional,
    /// proj_size, params, dtype, *, dropout, layer_norm, input_dropout, recurrent_dropout,
    /// zoneout, weight_drop, locked_dropout)`: `mode` is `RNN_TANH`, `RNN_RELU`, `LSTM` or
    /// `GRU`; `params` the arrays of the state_dict in PyTorch's registration order, then the
    /// layer norm's (`ln_*_l{k}`, layer by layer) when `layer_norm`; the keyword arguments are
    /// `RnnConfig`'s builder methods (their masks go to `forward(layer_masks=...)`).
    #[new]
    #[pyo3(signature = (mode, input_size, hidden_size, num_layers, bias, batch_first, bidirectional, proj_size, params, dtype="float32", *, dropout=0.0, layer_norm=false, input_dropout=0.0, recurrent_dropout=0.0, zoneout=0.0, weight_drop=0.0, locked_dropout=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        mode: &str,
        input_size: usize,
        hidden_size: usize,
        num_layers: usize,
        bias: bool,
        batch_first: bool,
        bidirectional: bool,
        proj_size: usize,
        params: Vec<Bound<'_, PyAny>>,
        dtype: &str,
        dropout: f64,
        layer_norm: bool,
        input_dropout: f64,
        recurrent_dropout: f64,
        zoneout: f64,
        weight_drop: f64,
        locked_dropout: bool,
    ) -> PyResult<PyRnn> {
        let mode: Mode = mode.parse().map_err(to_py_err)?;
        let cfg = RnnConfig::new(mode, input_size, hidden_size)
            .num_layers(num_layers)
            .bias(bias)
            .batch_first(batch_first)
            .bidirectional(bidirectional)
            .proj_size(proj_size)
            .dropout(dropout)
            .layer_norm(layer_norm)
            .input_dropout(input_dropout)
            .recurrent_dropout(recurrent_dropout)
            .zoneout(zoneout)
            .weight_drop(weight_drop)
            .locked_dropout(locked_dropout);
        let model = if parse_dtype(dtype)? {
            Model::F64(Arc::new(build::<f64>(cfg, &params)?))
        } else {
            Model::F32(Arc::new(build::<f32>(cfg, &params)?))
        };
        Ok(PyRnn { model })
    }

    /// Loads an `nn.RNN`/`nn.LSTM`/`nn.GRU` state_dict saved with safetensors
    /// (`safetensors.torch.save_file(module.state_dict(), path)`), also from inside a whole
    /// model's state_dict (`prefix="encoder.rnn"`, found when there is one recurrent layer).
    #[staticmethod]
    #[pyo3(signature = (path, prefix=None, nonlinearity=None, batch_first=false, dtype="float32"))]
    fn load(
        py: Python<'_>,
        path: std::path::PathBuf,
        prefix: Option<String>,
        nonlinearity: Option<&str>,
        batch_first: bool,
        dtype: &str,
    ) -> PyResult<PyRnn> {
        let relu = match nonlinearity {
            None => None,
            Some("tanh") => Some(false),
            Some("relu") => Some(true),
            Some(o) => {
                return Err(RecurError::new_err(format!(
                    "nonlinearity must be 'tanh' or 'relu', got '{o}'"
                )))
            }
        };
        let f64 = parse_dtype(dtype)?;
        let opts = LoadOptions {
            prefix,
            relu,
            batch_first,
        };
        compute(py, move || {
            let file = TensorFile::read(&path)?;
            Ok(if f64 {
                Model::F64(Arc::new(load_rnn(&file, &opts)?))
            } else {
                Model::F32(Arc::new(load_rnn(&file, &opts)?))
            })
        })
        .map(|model| PyRnn { model })
    }

    /// `forward(x, h0=None, c0=None, lengths=None, masks=None, train=False, layer_masks=None)`
    /// → `(output, h_n, c_n or None, tape or None)`. `masks`: dropout masks, one per layer but
    /// the last, (T, B, D·H_out) time-major. `layer_masks`: for a model with regularizers, the
    /// training-mode masks of every one, a dict per layer (see `layer_masks_from`); without
    /// it such a model runs in evaluation mode. `train`: keep a tape for `tape.backward`.
    #[pyo3(signature = (x, h0=None, c0=None, lengths=None, masks=None, train=false, layer_masks=None))]
    #[allow(clippy::too_many_arguments)]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        h0: Option<&Bound<'py, PyAny>>,
        c0: Option<&Bound<'py, PyAny>>,
        lengths: Option<Vec<usize>>,
        masks: Option<Vec<Bound<'py, PyAny>>>,
        train: bool,
        layer_masks: Option<Vec<Bound<'py, PyDict>>>,
    ) -> PyResult<ForwardOut<'py>> {
        match &self.model {
            Model::F32(r) => forward_impl(
                py,
                r,
                x,
                h0,
                c0,
                lengths,
                masks,
                layer_masks,
                train,
                TapeInner::F32,
            ),
            Model::F64(r) => forward_impl(
                py,
                r,
                x,
                h0,
                c0,
                lengths,
                masks,
                layer_masks,
                train,
                TapeInner::F64,
            ),
        }
    }

    /// `{"mode": ..., "input_size": ..., ...}`: the configuration with PyTorch's names.
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = with_model!(&self.model, r => r.config().clone());
        let d = PyDict::new(py);
        d.set_item(
            "mode",
            match c.mode {
                Mode::RnnTanh => "RNN_TANH",
                Mode::RnnRelu => "RNN_RELU",
                Mode::Lstm => "LSTM",
                Mode::Gru => "GRU",
            },
        )?;
        d.set_item("input_size", c.input_size)?;
        d.set_item("hidden_size", c.hidden_size)?;
        d.set_item("num_layers", c.num_layers)?;
        d.set_item("bias", c.bias)?;
        d.set_item("batch_first", c.batch_first)?;
        d.set_item("bidirectional", c.bidirectional)?;
        d.set_item("proj_size", c.proj_size)?;
        d.set_item("dropout", c.dropout)?;
        let r = &c.regular;
        d.set_item("layer_norm", r.layer_norm)?;
        d.set_item("input_dropout", r.input_dropout)?;
        d.set_item("recurrent_dropout", r.recurrent_dropout)?;
        d.set_item("zoneout", r.zoneout_h)?;
        d.set_item("weight_drop", r.weight_drop)?;
        d.set_item("locked_dropout", r.locked_dropout)?;
        Ok(d)
    }

    /// "float32" or "float64".
    #[getter]
    fn dtype(&self) -> &'static str {
        match self.model {
            Model::F32(_) => "float32",
            Model::F64(_) => "float64",
        }
    }

    /// The parameters as `{name: array}` in registration order (copies).
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        with_model!(&self.model, r => {
            for e in r.layout().entries() {
                let t = Tensor::new(&e.shape, r.params()[e.range()].to_vec()).map_err(to_py_err)?;
                d.set_item(&e.name, to_array(py, t)?)?;
            }
        });
        Ok(d)
    }

    /// A streaming state for `batch` sequences (unidirectional models), its weights stored
    /// in `precision`: `f32` (the model's own), `f16`, `bf16` or `int8` (float32 models only;
    /// see recur's docs/precision.md).
    #[pyo3(signature = (batch=1, precision="f32"))]
    fn stream(&self, batch: usize, precision: &str) -> PyResult<PyStream> {
        let precision: Precision = precision.parse().map_err(to_py_err)?;
        let inner = match &self.model {
            Model::F32(r) => StreamInner::F32(
                Stream32::try_new(r.clone(), |m| Stream::with_precision(m, batch, precision))
                    .map_err(to_py_err)?,
            ),
            Model::F64(_) if precision != Precision::F32 => {
                return Err(RecurError::new_err(format!(
                    "{precision} weights are for float32 models; this one is float64"
                )))
            }
            Model::F64(r) => StreamInner::F64(
                Stream64::try_new(r.clone(), |m| Stream::new(m, batch)).map_err(to_py_err)?,
            ),
        };
        Ok(PyStream { inner, batch })
    }
}

enum TapeInner {
    F32(Arc<Rnn<f32>>, Tape<f32>),
    F64(Arc<Rnn<f64>>, Tape<f64>),
}

/// What a training forward pass keeps for its backward pass.
#[pyclass(frozen, name = "Tape", module = "recur._native")]
struct PyTape {
    inner: TapeInner,
}

type BackwardOut<'py> = (
    Option<Bound<'py, PyAny>>,
    Bound<'py, PyAny>,
    Option<Bound<'py, PyAny>>,
    Bound<'py, PyAny>,
);

fn backward_impl<'py, T: Real + Element + Named>(
    py: Python<'py>,
    rnn: &Arc<Rnn<T>>,
    tape: &Tape<T>,
    go: Option<&Bound<'py, PyAny>>,
    ghn: Option<&Bound<'py, PyAny>>,
    gcn: Option<&Bound<'py, PyAny>>,
    input_grad: bool,
) -> PyResult<BackwardOut<'py>> {
    let go: Option<Tensor<T>> = opt_tensor(go, "grad_output")?;
    let ghn: Option<Tensor<T>> = opt_tensor(ghn, "grad_h_n")?;
    let gcn: Option<Tensor<T>> = opt_tensor(gcn, "grad_c_n")?;
    let (g, grads) = compute(py, || {
        let mut grads = rnn.zeros_like_params();
        let g = rnn.backward(tape, go.as_ref(), ghn.as_ref(), gcn.as_ref(), &mut grads)?;
        Ok((g, grads))
    })?;
    let n = grads.len();
    let flat = Tensor::new(&[n], grads).map_err(to_py_err)?;
    let dx = if input_grad {
        Some(to_array(py, g.input)?)
    } else {
        None
    };
    Ok((
        dx,
        to_array(py, g.h0)?,
        g.c0.map(|c| to_array(py, c)).transpose()?,
        to_array(py, flat)?,
    ))
}

fn backward_params_impl<'py, T: Real + Element + Named>(
    py: Python<'py>,
    rnn: &Arc<Rnn<T>>,
    tape: &Tape<T>,
    go: Option<&Bound<'py, PyAny>>,
    ghn: Option<&Bound<'py, PyAny>>,
    gcn: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let go: Option<Tensor<T>> = opt_tensor(go, "grad_output")?;
    let ghn: Option<Tensor<T>> = opt_tensor(ghn, "grad_h_n")?;
    let gcn: Option<Tensor<T>> = opt_tensor(gcn, "grad_c_n")?;
    let grads = compute(py, || {
        let mut grads = rnn.zeros_like_params();
        rnn.backward_params(tape, go.as_ref(), ghn.as_ref(), gcn.as_ref(), &mut grads)?;
        Ok(grads)
    })?;
    let n = grads.len();
    to_array(py, Tensor::new(&[n], grads).map_err(to_py_err)?)
}

#[pymethods]
impl PyTape {
    /// `backward(grad_output, grad_h_n, grad_c_n, input_grad=True)` →
    /// `(grad_input or None, grad_h0, grad_c0 or None, flat parameter gradients)` (the
    /// parameters' gradients back to back in registration order).
    #[pyo3(signature = (grad_output=None, grad_h_n=None, grad_c_n=None, input_grad=true))]
    fn backward<'py>(
        &self,
        py: Python<'py>,
        grad_output: Option<&Bound<'py, PyAny>>,
        grad_h_n: Option<&Bound<'py, PyAny>>,
        grad_c_n: Option<&Bound<'py, PyAny>>,
        input_grad: bool,
    ) -> PyResult<BackwardOut<'py>> {
        match &self.inner {
            TapeInner::F32(r, t) => {
                backward_impl(py, r, t, grad_output, grad_h_n, grad_c_n, input_grad)
            }
            TapeInner::F64(r, t) => {
                backward_impl(py, r, t, grad_output, grad_h_n, grad_c_n, input_grad)
            }
        }
    }

    /// `backward_params(grad_output, grad_h_n, grad_c_n)` → the flat parameter gradients only
    /// (skips the input's and the initial states' gradients where it can).
    #[pyo3(signature = (grad_output=None, grad_h_n=None, grad_c_n=None))]
    fn backward_params<'py>(
        &self,
        py: Python<'py>,
        grad_output: Option<&Bound<'py, PyAny>>,
        grad_h_n: Option<&Bound<'py, PyAny>>,
        grad_c_n: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match &self.inner {
            TapeInner::F32(r, t) => backward_params_impl(py, r, t, grad_output, grad_h_n, grad_c_n),
            TapeInner::F64(r, t) => backward_params_impl(py, r, t, grad_output, grad_h_n, grad_c_n),
        }
    }
}

type Stream32Dep<'a> = Stream<'a, f32>;
type Stream64Dep<'a> = Stream<'a, f64>;

self_cell::self_cell!(
    struct Stream32 {
        owner: Arc<Rnn<f32>>,
        #[covariant]
        dependent: Stream32Dep,
    }
);

self_cell::self_cell!(
    struct Stream64 {
        owner: Arc<Rnn<f64>>,
        #[covariant]
        dependent: Stream64Dep,
    }
);

enum StreamInner {
    F32(Stream32),
    F64(Stream64),
}

/// A running state of `batch` streams: `step(x)` advances each by one input.
#[pyclass(name = "Stream", module = "recur._native")]
struct PyStream {
    inner: StreamInner,
    batch: usize,
}

fn step_impl<'py, T: Real + Element + Named>(
    py: Python<'py>,
    s: &mut Stream<'_, T>,
    x: &Bound<'py, PyAny>,
    batch: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let x: Tensor<T> = tensor_from(x, "x")?;
    let shape = x.shape().to_vec();
    let unbatched = shape.len() == 1;
    if !(unbatched && batch == 1 || shape.len() == 2 && shape[0] == batch) {
        return Err(RecurError::new_err(format!(
            "step input: expected shape (batch {batch}, input_size){}, got {shape:?}",
            if batch == 1 { " or (input_size,)" } else { "" }
        )));
    }
    let h = compute(py, || s.step(x.data()).map(|h| h.to_vec()))?;
    let hs = if unbatched {
        vec![h.len()]
    } else {
        vec![batch, h.len() / batch]
    };
    to_array(py, Tensor::new(&hs, h).map_err(to_py_err)?)
}

fn state_impl<'py, T: Real + Element + Named>(
    py: Python<'py>,
    s: &Stream<'_, T>,
) -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
    let st = s.state();
    Ok((
        to_array(py, st.h)?,
        st.c.map(|c| to_array(py, c)).transpose()?,
    ))
}

fn set_state_impl<T: Real + Element + Named>(
    py: Python<'_>,
    s: &mut Stream<'_, T>,
    h: &Bound<'_, PyAny>,
    c: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let st = State {
        h: tensor_from(h, "h")?,
        c: opt_tensor(c, "c")?,
    };
    compute(py, || s.set_state(&st))
}

#[pymethods]
impl PyStream {
    /// Advances every stream by one input `x`, (batch, input_size) (or (input_size,) for a
    /// batch of 1); returns the last layer's new h, (batch, H_out).
    fn step<'py>(&mut self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let b = self.batch;
        match &mut self.inner {
            StreamInner::F32(c) => c.with_dependent_mut(|_, s| step_impl(py, s, x, b)),
            StreamInner::F64(c) => c.with_dependent_mut(|_, s| step_impl(py, s, x, b)),
        }
    }

    /// `(h, c or None)`: the state of every layer, (L, batch, H_out) and (L, batch, H).
    fn state<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
        match &self.inner {
            StreamInner::F32(c) => state_impl(py, c.borrow_dependent()),
            StreamInner::F64(c) => state_impl(py, c.borrow_dependent()),
        }
    }

    /// Replaces the state (e.g. with `h_n`, `c_n` of a forward pass).
    #[pyo3(signature = (h, c=None))]
    fn set_state(
        &mut self,
        py: Python<'_>,
        h: &Bound<'_, PyAny>,
        c: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        match &mut self.inner {
            StreamInner::F32(cell) => cell.with_dependent_mut(|_, s| set_state_impl(py, s, h, c)),
            StreamInner::F64(cell) => cell.with_dependent_mut(|_, s| set_state_impl(py, s, h, c)),
        }
    }

    /// Sets every state back to zero.
    fn reset(&mut self) {
        match &mut self.inner {
            StreamInner::F32(c) => c.with_dependent_mut(|_, s| s.reset()),
            StreamInner::F64(c) => c.with_dependent_mut(|_, s| s.reset()),
        }
    }

    /// The number of streams.
    #[getter]
    fn batch(&self) -> usize {
        self.batch
    }
}

/// Sets how many threads recur uses (0 = all cores, the default).
#[pyfunction]
fn set_num_threads(n: usize) {
    recur::set_num_threads(n);
}

/// How many threads recur uses.
#[pyfunction]
fn get_num_threads() -> usize {
    recur::num_threads()
}

/// Frees the scratch buffers recur keeps between calls.
#[pyfunction]
fn release_buffers() {
    recur::release_buffers();
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRnn>()?;
    m.add_class::<PyTape>()?;
    m.add_class::<PyStream>()?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(release_buffers, m)?)?;
    m.add("RecurError", m.py().get_type::<RecurError>())?;
    Ok(())
}
