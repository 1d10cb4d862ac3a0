//! Compact weights (f16, bf16, int8) for inference over whole sequences.
//!
//! [`Rnn::set_precision`] rounds a model's recurrent weights to a [`Precision`] once and keeps
//! them so; from then on:
//!
//! - [`Rnn::forward`] of an **int8** model runs the scheme of
//!   `torch.ao.quantization.quantize_dynamic` over the whole sequence: the input projection
//!   of every step as one batched int8 product (each input row quantized with its own scale
//!   and zero point, `recur_kernels::quant::QuantMat::gemm`), then per step the recurrent
//!   product on the quantized h_{t-1} and the f32 cell;
//! - [`Rnn::forward`] of an **f16 / bf16** model runs the f32 engine on the rounded weights
//!   widened once to f32 (the whole-sequence products are bound by arithmetic, not by the
//!   bytes of the weights, so widening inside every product would only add work; see
//!   docs/precision.md);
//! - a [`crate::Stream`] of the model steps with the compact weights themselves.
//!
//! A compact model is for inference: training it is an error.

use crate::core::config::Mode;
use crate::core::engine::Dims;
use crate::core::rnn::{check_input, Output, Rnn, State};
use crate::core::stream::{half_layer, Precision};
use crate::core::tensor::Tensor;
use crate::error::{Error, Result};
use recur_kernels::half::{Format, HalfCell, HalfKind, HalfScratch};
use recur_kernels::quant::QuantMat;
use recur_kernels::Real;

/// The compact form of a model's weights.
#[derive(Debug)]
pub(crate) struct Compact {
    precision: Precision,
    /// int8: per (layer, direction), `layer * D + direction`, the quantized layer. Empty for
    /// 16-bit weights (their whole-sequence forward is the f32 engine's).
    cells: Vec<HalfCell>,
}

/// The storage format of a precision other than f32.
pub(crate) fn format_of(p: Precision) -> Option<Format> {
    match p {
        Precision::F32 => None,
        Precision::F16 => Some(Format::Half(HalfKind::F16)),
        Precision::Bf16 => Some(Format::Half(HalfKind::Bf16)),
        Precision::Int8 => Some(Format::Int8),
    }
}

/// The values a weight matrix (rows, cols) holds once stored in `format`.
fn rounded(w: &[f32], rows: usize, cols: usize, format: Format) -> Vec<f32> {
    match format {
        Format::Half(kind) => w.iter().map(|&x| kind.decode(kind.encode(x))).collect(),
        Format::Int8 => QuantMat::from_f32(w, rows, cols).dequantized(),
    }
}

impl<T: Real> Rnn<T> {
    /// How the recurrent weights are stored: [`Precision::F32`] unless
    /// [`Rnn::set_precision`] made them compact.
    pub fn precision(&self) -> Precision {
        self.compact
            .as_ref()
            .map_or(Precision::F32, |c| c.precision)
    }

    /// An error if the model's weights are compact (training needs the f32 weights).
    pub(crate) fn check_trainable(&self) -> Result<()> {
        match self.precision() {
            Precision::F32 => Ok(()),
            p => Err(Error::Config(format!(
                "this model's weights are stored as {p}, which is for inference only; train the f32 model (before quantizing it)"
            ))),
        }
    }
}

impl<T: Real> Rnn<T> {
    /// Stores the recurrent weights (`weight_ih`, `weight_hh`, `weight_hr` of every layer and
    /// direction; the biases stay f32) in `precision`, for inference:
    ///
    /// - `F16`, `Bf16`: every weight rounded to nearest (ties to even); f16 weights beyond
    ///   ±65504 are an error;
    /// - `Int8`: int8 per output row, symmetric (one scale per row), activations quantized
    ///   per row at every product, as `torch.ao.quantization.quantize_dynamic`;
    /// - `F32`: nothing (the model's own weights).
    ///
    /// The parameters then hold the rounded (dequantized) values, so that what the model
    /// saves and what any f32 code reads is what it computes with. Setting the same precision
    /// again changes nothing (the rounding is idempotent, for int8 too: the scales are chosen
    /// so that the dequantized weights quantize back to themselves); another compact
    /// precision is an error. Changing the parameters ([`Rnn::params_mut`]) makes the model
    /// f32 again. Layer norm and zoneout are not supported.
    ///
    /// ```
    /// use recur::{Precision, Rnn, RnnConfig, Tensor};
    /// let mut lstm: Rnn<f32> = Rnn::new(RnnConfig::lstm(3, 8), 0).unwrap();
    /// let x = Tensor::new(&[5, 2, 3], (0..30).map(|k| (k as f32 * 0.37).sin()).collect()).unwrap();
    /// let full = lstm.forward(&x, None, None).unwrap();
    /// lstm.set_precision(Precision::Int8).unwrap();
    /// let int8 = lstm.forward(&x, None, None).unwrap();
    /// let gap = full.output.data().iter().zip(int8.output.data()).map(|(a, b)| (a - b).abs());
    /// assert!(gap.fold(0.0f32, f32::max) < 0.05);
    /// ```
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        let now = self.precision();
        if precision == now {
            return Ok(());
        }
        if now != Precision::F32 {
            return Err(Error::Config(format!(
                "the weights are already stored as {now}: load the f32 model to make it {precision}"
            )));
        }
        let Some(format) = format_of(precision) else {
            return Ok(());
        };
        if recur_kernels::as_f32(self.params()).is_none() {
            return Err(Error::Config(format!(
                "{precision} weights are for f32 models; this model computes in {}",
                T::DTYPE
            )));
        }
        let c = self.config().clone();
        if crate::core::regular::applies(&c, false) {
            return Err(Error::Config(format!(
                "{precision} weights are for PyTorch's cells without layer norm or zoneout: \
                 run this model in f32, or retrain it without them (recur train: \
                 --layer-norm=false, no --zoneout, none of --peepholes, --input-forget, \
                 --cell-clip, --activations, --gru-linear-before-reset false)"
            )));
        }
        let nd = c.num_directions();
        let dims = |l: usize| Dims {
            mode: c.mode,
            h: c.hidden_size,
            hout: c.h_out(),
            input: c.layer_input_size(l),
        };
        // Check every weight first (range, finiteness): an error leaves the model as it was.
        for l in 0..c.num_layers {
            for d in 0..nd {
                half_layer(&dims(l), &self.dir_params(l, d), format)?;
            }
        }
        let g = c.mode.gates() * c.hidden_size;
        let mut rounds = Vec::new();
        for l in 0..c.num_layers {
            for d in 0..nd {
                let dl = self.layout().dir(l, d).clone();
                rounds.push((dl.w_ih, g, c.layer_input_size(l)));
                rounds.push((dl.w_hh, g, c.h_out()));
                if let Some(r) = dl.w_hr {
                    rounds.push((r, c.h_out(), c.hidden_size));
                }
            }
        }
        let params = recur_kernels::as_f32_mut(self.params_mut()).expect("an f32 model");
        for (range, rows, cols) in rounds {
            let v = rounded(&params[range.clone()], rows, cols, format);
            params[range].copy_from_slice(&v);
        }
        let cells = if format == Format::Int8 {
            let mut cells = Vec::with_capacity(c.num_layers * nd);
            for l in 0..c.num_layers {
                for d in 0..nd {
                    cells.push(half_layer(&dims(l), &self.dir_params(l, d), format)?);
                }
            }
            cells
        } else {
            Vec::new()
        };
        self.compact = Some(std::sync::Arc::new(Compact { precision, cells }));
        Ok(())
    }
}

/// Whether [`Rnn::forward`] goes through [`forward`] (int8 weights).
pub(crate) fn takes_over(c: &Option<std::sync::Arc<Compact>>) -> Option<&Compact> {
    c.as_deref().filter(|c| !c.cells.is_empty())
}

/// [`Rnn::forward`] with int8 weights: the same inputs, shapes and `PackedSequence`
/// semantics for `lengths`.
pub(crate) fn forward<T: Real>(
    rnn: &Rnn<T>,
    cmp: &Compact,
    input: &Tensor<T>,
    state: Option<&State<T>>,
    lengths: Option<&[usize]>,
) -> Result<Output<T>> {
    let c = rnn.config();
    let (t, b, unbatched, lens) = check_input(c, input, lengths)?;
    let (nl, nd, h, hout) = (c.num_layers, c.num_directions(), c.hidden_size, c.h_out());
    let lstm = c.mode == Mode::Lstm;
    let bs = if unbatched { None } else { Some(b) };
    // The initial state as (L·D, B, n) f32.
    let take = |s: Option<&Tensor<T>>, cell: bool, what: &str| -> Result<Vec<f32>> {
        let want = rnn.state_shape(bs, cell);
        let n = want.iter().product();
        match s {
            None => Ok(vec![0.0; n]),
            Some(s) if s.shape() != want.as_slice() => Err(Error::shape(what, &want, s.shape())),
            Some(s) => Ok(s.data().iter().map(|v| v.to_f64() as f32).collect()),
        }
    };
    let h0 = take(state.map(|s| &s.h), false, "h0")?;
    let c0 = match state.and_then(|s| s.c.as_ref()) {
        Some(_) if !lstm => {
            return Err(Error::Input(
                "c0 was given, but the model has no cell state".into(),
            ))
        }
        cs => {
            if lstm {
                take(cs, true, "c0")?
            } else {
                Vec::new()
            }
        }
    };
    // The input in time-major order (T·B, I), zero at padding.
    let i = c.input_size;
    let src = input.data();
    let mut x = vec![0.0f32; t * b * i];
    for ti in 0..t {
        for bi in 0..b {
            if ti >= lens[bi] {
                continue;
            }
            let from = if c.batch_first && !unbatched {
                bi * t + ti
            } else {
                ti * b + bi
            } * i;
            for (o, v) in x[(ti * b + bi) * i..][..i]
                .iter_mut()
                .zip(&src[from..from + i])
            {
                *o = v.to_f64() as f32;
            }
        }
    }
    let ragged = lens.iter().any(|&l| l != t);
    let threads = recur_kernels::num_threads();
    let mut h_n = vec![0.0f32; nl * nd * b * hout];
    let mut c_n = vec![0.0f32; if lstm { nl * nd * b * h } else { 0 }];
    let mut layer_in = x;
    let mut layer_w = i;
    for l in 0..nl {
        let mut out = vec![0.0f32; t * b * nd * hout];
        for d in 0..nd {
            let cell = &cmp.cells[l * nd + d];
            debug_assert_eq!(cell.input_size(), layer_w);
            let g = cell.gate_rows();
            let mut pre = vec![0.0f32; t * b * g];
            cell.project(t * b, &layer_in, &mut pre, threads);
            let k = l * nd + d;
            let mut hs = h0[k * b * hout..(k + 1) * b * hout].to_vec();
            let mut cs = if lstm {
                c0[k * b * h..(k + 1) * b * h].to_vec()
            } else {
                Vec::new()
            };
            let mut h_new = vec![0.0f32; b * hout];
            let (mut gates, mut gh, mut hn, mut m) = (
                vec![0.0f32; b * g],
                vec![0.0f32; if c.mode == Mode::Gru { b * g } else { 0 }],
                vec![0.0f32; if c.mode == Mode::Gru { b * h } else { 0 }],
                vec![0.0f32; if c.proj_size > 0 { b * h } else { 0 }],
            );
            let (nq, nqs, nqz) = cell.quant_scratch(b);
            let (mut q, mut qs, mut qz) = (vec![0u8; nq], vec![0.0f32; nqs], vec![0i32; nqz]);
            let mut c_keep = if ragged { cs.clone() } else { Vec::new() };
            for s in 0..t {
                let ti = if d == 0 { s } else { t - 1 - s };
                if ragged {
                    c_keep.copy_from_slice(&cs);
                }
                cell.step_projected(
                    b,
                    &pre[ti * b * g..(ti + 1) * b * g],
                    &hs,
                    &mut cs,
                    &mut h_new,
                    HalfScratch {
                        gates: &mut gates,
                        gh: &mut gh,
                        hn: &mut hn,
                        m: &mut m,
                        q: &mut q,
                        qs: &mut qs,
                        qz: &mut qz,
                    },
                    threads,
                );
                for bi in 0..b {
                    let row = &mut out[(ti * b + bi) * nd * hout + d * hout..][..hout];
                    if ti < lens[bi] {
                        hs[bi * hout..(bi + 1) * hout]
                            .copy_from_slice(&h_new[bi * hout..(bi + 1) * hout]);
                        row.copy_from_slice(&h_new[bi * hout..(bi + 1) * hout]);
                    } else if lstm {
                        // Past its end (forward) or before its start (reverse): the row keeps
                        // its state and outputs 0.
                        cs[bi * h..(bi + 1) * h].copy_from_slice(&c_keep[bi * h..(bi + 1) * h]);
                    }
                }
            }
            h_n[k * b * hout..(k + 1) * b * hout].copy_from_slice(&hs);
            if lstm {
                c_n[k * b * h..(k + 1) * b * h].copy_from_slice(&cs);
            }
        }
        layer_in = out;
        layer_w = nd * hout;
    }
    // Back to the user's layout and type.
    let back = |v: &[f32]| -> Vec<T> { v.iter().map(|&x| T::from_f64(x as f64)).collect() };
    let w = nd * hout;
    let output = if c.batch_first && !unbatched {
        let mut o = vec![T::ZERO; t * b * w];
        for ti in 0..t {
            for bi in 0..b {
                for (dst, &v) in o[(bi * t + ti) * w..][..w]
                    .iter_mut()
                    .zip(&layer_in[(ti * b + bi) * w..][..w])
                {
                    *dst = T::from_f64(v as f64);
                }
            }
        }
        o
    } else {
        back(&layer_in)
    };
    let mut out_shape = input.shape().to_vec();
    *out_shape.last_mut().expect("checked input") = w;
    Ok(Output {
        output: Tensor::new(&out_shape, output)?,
        h_n: Tensor::new(&rnn.state_shape(bs, false), back(&h_n))?,
        c_n: if lstm {
            Some(Tensor::new(&rnn.state_shape(bs, true), back(&c_n))?)
        } else {
            None
        },
    })
}
