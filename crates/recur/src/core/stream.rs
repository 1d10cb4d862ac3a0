//! Streaming: advance a recurrent state one input at a time, with no allocation per step.

use crate::core::config::Mode;
use crate::core::engine::{self, Dims, StepWeights};
use crate::core::rnn::{Rnn, State};
use crate::core::tensor::Tensor;
use crate::error::{Error, Result};
use recur_kernels::gemm::MatRef;
use recur_kernels::gru::GruStepPacked;
use recur_kernels::half::{CellKind, Format, HalfCell, HalfKind, HalfScratch};
use recur_kernels::lstm::LstmStepPacked;
use recur_kernels::packed::PackedB;
use recur_kernels::Real;

/// How a [`Stream`] stores its weights.
///
/// `F16` and `Bf16` (f32 streams only) round every weight once, when the stream is made, and
/// widen them to f32 on the fly at each step (F16C): a step reads half the bytes, and the
/// products and the state stay in f32. The only error is the weights' rounding: relative
/// 2^-11 per weight for f16, 2^-8 for bf16. f16 weights beyond ±65504 are refused.
///
/// `Int8` quantizes the recurrent weights to int8 with one scale per output row, and at every
/// step each product's input (x, h_{t-1}) to 7-bit unsigned integers with a scale and zero
/// point per row, as PyTorch's dynamic quantization does (`quantize_dynamic`, fbgemm's
/// `reduce_range`); the integer products are exact, the biases and the cell stay f32
/// (`recur_kernels::quant`). docs/precision.md measures what each costs a trained model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// The model's own weights (no rounding).
    #[default]
    F32,
    /// IEEE half precision weights.
    F16,
    /// bfloat16 weights.
    Bf16,
    /// int8 weights, dynamically quantized activations.
    Int8,
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Precision> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            "int8" => Ok(Precision::Int8),
            _ => Err(Error::Config(format!(
                "unknown weight precision '{s}': expected f32, f16, bf16 or int8"
            ))),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        })
    }
}

/// The weights a stream steps with.
enum Weights<T> {
    Full {
        /// Per layer: the recurrent weights packed once, for every step.
        packed: Vec<StepWeights<T>>,
        /// Per layer: W_ihᵀ (in, G·H) packed once, for the input projection of every step.
        ih_t: Vec<PackedB<T>>,
        /// Per layer: a GRU's or an LSTM's (without projection) weights packed for the fused
        /// one-row step (f32, batch 1); empty otherwise, and then the two packed products
        /// above and the cell run instead.
        fused: Vec<Fused>,
    },
    Half(Vec<HalfCell>),
}

/// One layer's weights packed for the fused one-row step.
enum Fused {
    Gru(GruStepPacked),
    Lstm(LstmStepPacked),
}

/// A running state of a unidirectional [`Rnn`] for a batch of `B` streams.
///
/// Every buffer is allocated by [`Stream::new`]; [`Stream::step`] only computes. It gives the
/// same numbers as [`Rnn::forward`] over the whole sequence (up to floating-point rounding of
/// differently blocked matrix products).
///
/// ```
/// use recur::{Rnn, RnnConfig, Stream};
/// let gru: Rnn<f32> = Rnn::new(RnnConfig::gru(2, 3), 0).unwrap();
/// let mut s = Stream::new(&gru, 1).unwrap();
/// for x in [[0.5f32, -1.0], [0.25, 0.0]] {
///     let h = s.step(&x).unwrap();
///     assert_eq!(h.len(), 3);
/// }
/// ```
pub struct Stream<'m, T> {
    model: &'m Rnn<T>,
    b: usize,
    /// (L, B, H_out): h of every layer.
    h: Vec<T>,
    /// LSTM: (L, B, H): c of every layer.
    c: Vec<T>,
    /// (B, G·H): gate pre-activations of the current layer.
    gates: Vec<T>,
    /// (B, H_out): the new h of the current layer.
    h_new: Vec<T>,
    /// LSTM: (B, H): the new c of the current layer.
    c_new: Vec<T>,
    /// LSTM with projection: (B, H).
    m: Vec<T>,
    /// GRU: (B, H).
    hn: Vec<T>,
    /// GRU: (B, 3H).
    gh: Vec<T>,
    /// int8 weights: the quantized operands of a step, their scales and zero points.
    q: Vec<u8>,
    qs: Vec<f32>,
    qz: Vec<i32>,
    weights: Weights<T>,
}

impl<'m, T: Real> Stream<'m, T> {
    /// A stream of `batch` sequences starting from zero states.
    pub fn new(model: &'m Rnn<T>, batch: usize) -> Result<Stream<'m, T>> {
        Stream::make(model, batch, Precision::F32)
    }

    /// The weights' precision of this stream.
    pub fn precision(&self) -> Precision {
        match &self.weights {
            Weights::Full { .. } => Precision::F32,
            Weights::Half(layers) => match layers[0].format() {
                Format::Half(HalfKind::F16) => Precision::F16,
                Format::Half(HalfKind::Bf16) => Precision::Bf16,
                Format::Int8 => Precision::Int8,
            },
        }
    }

    fn make(model: &'m Rnn<T>, batch: usize, precision: Precision) -> Result<Stream<'m, T>> {
        let c = model.config();
        if c.bidirectional {
            return Err(Error::Config(
                "a bidirectional model cannot stream: its reverse direction needs the whole sequence; use Rnn::forward".into(),
            ));
        }
        if batch == 0 {
            return Err(Error::Input("a stream needs a batch of at least 1".into()));
        }
        // A model whose weights are stored compactly streams in its own precision.
        let precision = match model.precision() {
            Precision::F32 => precision,
            own if precision == Precision::F32 || precision == own => own,
            own => {
                return Err(Error::Config(format!(
                    "the model's weights are stored as {own}: they cannot stream as {precision}"
                )))
            }
        };
        if precision != Precision::F32 && crate::core::regular::applies(c, false) {
            return Err(Error::Config(format!(
                "{precision} weights are for layers without layer norm, zoneout or cell variants"
            )));
        }
        let (l, h, hout, g) = (
            c.num_layers,
            c.hidden_size,
            c.h_out(),
            c.mode.gates() * c.hidden_size,
        );
        let lstm = c.mode == Mode::Lstm;
        let dims = |k: usize| Dims {
            mode: c.mode,
            h,
            hout,
            input: c.layer_input_size(k),
        };
        if precision != Precision::F32
            && std::any::TypeId::of::<T>() != std::any::TypeId::of::<f32>()
        {
            return Err(Error::Config(format!(
                "{precision} weights are for f32 streams; this model computes in {}",
                T::DTYPE
            )));
        }
        let weights = match precision {
            Precision::F32 => Weights::Full {
                packed: (0..l)
                    .map(|k| StepWeights::new(&dims(k), &model.dir_params(k, 0)))
                    .collect(),
                ih_t: (0..l)
                    .map(|k| {
                        let mut pb = PackedB::new();
                        pb.pack(
                            MatRef::new(model.dir_params(k, 0).w_ih, g, c.layer_input_size(k)).t(),
                        );
                        pb
                    })
                    .collect(),
                fused: if (c.mode == Mode::Gru || (c.mode == Mode::Lstm && c.proj_size == 0))
                    && batch == 1
                    && std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
                {
                    (0..l)
                        .map(|k| {
                            let p = model.dir_params(k, 0);
                            let args = (
                                h,
                                c.layer_input_size(k),
                                f32_ref(p.w_ih),
                                f32_ref(p.w_hh),
                                p.b_ih.map(f32_ref),
                                p.b_hh.map(f32_ref),
                            );
                            if c.mode == Mode::Gru {
                                Fused::Gru(GruStepPacked::new(
                                    args.0, args.1, args.2, args.3, args.4, args.5,
                                ))
                            } else {
                                Fused::Lstm(LstmStepPacked::new(
                                    args.0, args.1, args.2, args.3, args.4, args.5,
                                ))
                            }
                        })
                        .collect()
                } else {
                    vec![]
                },
            },
            Precision::F16 | Precision::Bf16 | Precision::Int8 => {
                let kind = match precision {
                    Precision::F16 => Format::Half(HalfKind::F16),
                    Precision::Bf16 => Format::Half(HalfKind::Bf16),
                    _ => Format::Int8,
                };
                Weights::Half(
                    (0..l)
                        .map(|k| half_layer(&dims(k), &model.dir_params(k, 0), kind))
                        .collect::<Result<_>>()?,
                )
            }
        };
        // The int8 scratch of the largest layer (none for other formats).
        let q = match &weights {
            Weights::Half(layers) => layers
                .iter()
                .map(|c| c.quant_scratch(batch))
                .fold((0, 0, 0), |a, b| (a.0.max(b.0), a.1.max(b.1), a.2.max(b.2))),
            Weights::Full { .. } => (0, 0, 0),
        };
        Ok(Stream {
            model,
            b: batch,
            h: vec![T::ZERO; l * batch * hout],
            c: if lstm {
                vec![T::ZERO; l * batch * h]
            } else {
                vec![]
            },
            gates: vec![T::ZERO; batch * g],
            h_new: vec![T::ZERO; batch * hout],
            c_new: if lstm {
                vec![T::ZERO; batch * h]
            } else {
                vec![]
            },
            m: if lstm && c.proj_size > 0 {
                vec![T::ZERO; batch * h]
            } else {
                vec![]
            },
            hn: if c.mode == Mode::Gru {
                vec![T::ZERO; batch * h]
            } else {
                vec![]
            },
            gh: if c.mode == Mode::Gru {
                vec![T::ZERO; batch * g]
            } else {
                vec![]
            },
            q: vec![0; q.0],
            qs: vec![0.0; q.1],
            qz: vec![0; q.2],
            weights,
        })
    }

    /// Sets every state back to zero.
    pub fn reset(&mut self) {
        self.h.fill(T::ZERO);
        self.c.fill(T::ZERO);
    }

    /// The current state, shaped as `h_n`/`c_n` of [`Rnn::forward`]: (L, B, H_out), (L, B, H).
    pub fn state(&self) -> State<T> {
        let m = self.model;
        State {
            h: Tensor::new(&m.state_shape(Some(self.b), false), self.h.clone()).expect("shape"),
            c: if self.c.is_empty() {
                None
            } else {
                Some(
                    Tensor::new(&m.state_shape(Some(self.b), true), self.c.clone()).expect("shape"),
                )
            },
        }
    }

    /// Replaces the current state (e.g. with `h_n`/`c_n` of a forward pass).
    pub fn set_state(&mut self, s: &State<T>) -> Result<()> {
        let m = self.model;
        let want = m.state_shape(Some(self.b), false);
        if s.h.shape() != want.as_slice() {
            return Err(Error::shape("h", &want, s.h.shape()));
        }
        match (&s.c, self.c.is_empty()) {
            (Some(c), false) => {
                let wc = m.state_shape(Some(self.b), true);
                if c.shape() != wc.as_slice() {
                    return Err(Error::shape("c", &wc, c.shape()));
                }
                self.c.copy_from_slice(c.data());
            }
            (None, false) => self.c.fill(T::ZERO),
            (Some(_), true) => {
                return Err(Error::Input(
                    "c was given, but the model has no cell state".into(),
                ))
            }
            (None, true) => {}
        }
        self.h.copy_from_slice(s.h.data());
        Ok(())
    }

    /// Advances every stream by one input: `x` is (B, input_size), row-major. Returns the last
    /// layer's new h, (B, H_out).
    pub fn step(&mut self, x: &[T]) -> Result<&[T]> {
        let cfg = self.model.config();
        let b = self.b;
        if x.len() != b * cfg.input_size {
            return Err(Error::Input(format!(
                "step input: expected (batch {b}, input_size {}) = {} values, got {}",
                cfg.input_size,
                b * cfg.input_size,
                x.len()
            )));
        }
        if crate::core::regular::applies(cfg, false) {
            // Layer norm, zoneout or cell variants: one evaluation step of the general layers.
            let xshape = if cfg.batch_first {
                [b, 1, cfg.input_size]
            } else {
                [1, b, cfg.input_size]
            };
            let xs = Tensor::new(&xshape, x.to_vec())?;
            let shape = self.model.state_shape(Some(b), false);
            let state = State {
                h: Tensor::new(&shape, self.h.clone())?,
                c: if self.c.is_empty() {
                    None
                } else {
                    Some(Tensor::new(&shape, self.c.clone())?)
                },
            };
            let out = self.model.forward(&xs, Some(&state), None)?;
            self.h.copy_from_slice(out.h_n.data());
            if let Some(c) = &out.c_n {
                self.c.copy_from_slice(c.data());
            }
            let l = cfg.num_layers - 1;
            let hout = cfg.h_out();
            return Ok(&self.h[l * b * hout..(l + 1) * b * hout]);
        }
        let (h, hout, g) = (
            cfg.hidden_size,
            cfg.h_out(),
            cfg.mode.gates() * cfg.hidden_size,
        );
        for l in 0..cfg.num_layers {
            let d = Dims {
                mode: cfg.mode,
                h,
                hout,
                input: cfg.layer_input_size(l),
            };
            let p = self.model.dir_params(l, 0);
            let (below, this_and_above) = self.h.split_at_mut(l * b * hout);
            let xin: &[T] = if l == 0 {
                x
            } else {
                &below[(l - 1) * b * hout..]
            };
            let h_prev = &mut this_and_above[..b * hout];
            let (c_prev, c_new): (&mut [T], &mut [T]) = if self.c.is_empty() {
                (&mut [], &mut [])
            } else {
                (&mut self.c[l * b * h..(l + 1) * b * h], &mut self.c_new)
            };
            match &self.weights {
                Weights::Full { fused, .. } if !fused.is_empty() => match &fused[l] {
                    Fused::Gru(f) => {
                        f.step(f32_ref(xin), f32_ref(h_prev), f32_mut(&mut self.h_new));
                    }
                    Fused::Lstm(f) => {
                        f.step(
                            f32_ref(xin),
                            f32_ref(h_prev),
                            f32_ref(c_prev),
                            f32_mut(&mut self.h_new),
                            f32_mut(c_new),
                        );
                        c_prev.copy_from_slice(c_new);
                    }
                },
                Weights::Full { packed, ih_t, .. } => {
                    // gates (B, G·H) = x (B, in) · W_ihᵀ
                    let (b1, b2) = engine::biases(&d, &p);
                    ih_t[l].matmul_bias(b, xin, d.input, &mut self.gates, g, b1, b2, true);
                    engine::step(
                        &d,
                        &p,
                        &packed[l],
                        b,
                        &mut self.gates,
                        h_prev,
                        &mut self.h_new,
                        c_prev,
                        c_new,
                        &mut self.m,
                        &mut self.hn,
                        &mut self.gh,
                        false,
                        true,
                    );
                    c_prev.copy_from_slice(c_new);
                }
                // The cell state is updated in place.
                Weights::Half(layers) => layers[l].step(
                    b,
                    f32_ref(xin),
                    f32_ref(h_prev),
                    f32_mut(c_prev),
                    f32_mut(&mut self.h_new),
                    HalfScratch {
                        gates: f32_mut(&mut self.gates),
                        gh: f32_mut(&mut self.gh),
                        hn: f32_mut(&mut self.hn),
                        m: f32_mut(&mut self.m),
                        q: &mut self.q,
                        qs: &mut self.qs,
                        qz: &mut self.qz,
                    },
                    recur_kernels::num_threads(),
                ),
            }
            h_prev.copy_from_slice(&self.h_new);
        }
        let l = cfg.num_layers - 1;
        Ok(&self.h[l * b * hout..(l + 1) * b * hout])
    }
}

impl<'m> Stream<'m, f32> {
    /// A stream of `batch` sequences whose weights are stored in `precision` (see
    /// [`Precision`]), starting from zero states.
    ///
    /// ```
    /// use recur::{Precision, Rnn, RnnConfig, Stream};
    /// let lstm: Rnn<f32> = Rnn::new(RnnConfig::lstm(3, 8), 0).unwrap();
    /// let mut full = Stream::new(&lstm, 1).unwrap();
    /// let mut half = Stream::with_precision(&lstm, 1, Precision::F16).unwrap();
    /// let x = [0.5f32, -1.0, 0.25];
    /// let (a, b) = (full.step(&x).unwrap().to_vec(), half.step(&x).unwrap().to_vec());
    /// assert!(a.iter().zip(&b).all(|(u, v)| (u - v).abs() < 1e-3));
    /// ```
    pub fn with_precision(
        model: &'m Rnn<f32>,
        batch: usize,
        precision: Precision,
    ) -> Result<Stream<'m, f32>> {
        Stream::make(model, batch, precision)
    }
}

fn f32_ref<T: 'static>(v: &[T]) -> &[f32] {
    recur_kernels::as_f32(v).expect("half weights: f32 stream")
}

fn f32_mut<T: 'static>(v: &mut [T]) -> &mut [f32] {
    recur_kernels::as_f32_mut(v).expect("half weights: f32 stream")
}

/// One layer's weights rounded to `kind`, refusing values beyond the format's range.
pub(crate) fn half_layer<T: Real>(
    d: &Dims,
    p: &engine::DirParams<'_, T>,
    format: Format,
) -> Result<HalfCell> {
    let to32 = |v: &[T]| -> Vec<f32> { v.iter().map(|x| x.to_f64() as f32).collect() };
    let checked = |name: &str, v: &[T]| -> Result<Vec<f32>> {
        let w = to32(v);
        if let Some(x) = w.iter().find(|x| !x.is_finite()) {
            return Err(Error::Config(format!(
                "{name} holds {x}: cannot store it as {format:?}"
            )));
        }
        if let Format::Half(kind) = format {
            if let Some(x) = w.iter().find(|x| x.abs() > kind.max()) {
                return Err(Error::Config(format!(
                    "{name} holds {x}, beyond the range of {kind:?} weights (±{}); use f32 or bf16",
                    kind.max()
                )));
            }
        }
        Ok(w)
    };
    let cell = match d.mode {
        Mode::Lstm => CellKind::Lstm,
        Mode::Gru => CellKind::Gru,
        Mode::RnnTanh => CellKind::RnnTanh,
        Mode::RnnRelu => CellKind::RnnRelu,
    };
    let w_hr = p.w_hr.map(|w| checked("weight_hr", w)).transpose()?;
    Ok(HalfCell::new(
        cell,
        d.h,
        d.input,
        &checked("weight_ih", p.w_ih)?,
        &checked("weight_hh", p.w_hh)?,
        w_hr.as_deref(),
        p.b_ih.map(to32).as_deref(),
        p.b_hh.map(to32).as_deref(),
        format,
    ))
}
