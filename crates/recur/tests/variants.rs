//! The cell variants of ONNX and Keras in the core ([`recur::CellOptions`]): BPTT against
//! finite differences in f64 for every variant and activation; the forward pass against the
//! committed ONNX fixtures (`tests/fixtures/onnx/cases`, outputs of ONNX Runtime or
//! `onnx.reference`), with an `RnnConfig` built from each case's attributes and the weights
//! mapped to PyTorch's gate order; the general layer with an inactive variant equals the fused
//! engine; streaming; validation; the state_dict round trip of the peepholes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::core::config::{Activation, CellOptions};
use recur::core::tolerance::{FD_STEP, FINITE_DIFF};
use recur::{Dropout, Mode, Rnn, RnnConfig, State, Tensor};
use std::path::{Path, PathBuf};

fn randn(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// `L = Σ output·gy + Σ h_n·gh (+ Σ c_n·gc)`: backward against central differences for every
/// parameter, input element and initial-state element.
fn gradcheck(cfg: &RnnConfig, t: usize, b: usize, lengths: &[usize], seed: u64) -> usize {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut model: Rnn<f64> = Rnn::new(cfg.clone(), seed).unwrap();
    let (nl, nd, h) = (cfg.num_layers, cfg.num_directions(), cfg.hidden_size);
    let lstm = cfg.mode == Mode::Lstm;
    let i = cfg.input_size;
    let x = randn(&mut rng, t * b * i);
    let h0 = randn(&mut rng, nl * nd * b * h);
    let c0 = if lstm {
        randn(&mut rng, nl * nd * b * h)
    } else {
        vec![]
    };
    let width = nd * h;
    let gy = randn(&mut rng, t * b * width);
    let gh = randn(&mut rng, nl * nd * b * h);
    let gc = if lstm {
        randn(&mut rng, nl * nd * b * h)
    } else {
        vec![]
    };
    let xshape = if cfg.batch_first {
        [b, t, i]
    } else {
        [t, b, i]
    };
    let oshape = if cfg.batch_first {
        [b, t, width]
    } else {
        [t, b, width]
    };
    let sshape = [nl * nd, b, h];
    let loss = |m: &Rnn<f64>, x: &[f64], h0: &[f64], c0: &[f64]| -> f64 {
        let st = State {
            h: Tensor::new(&sshape, h0.to_vec()).unwrap(),
            c: lstm.then(|| Tensor::new(&sshape, c0.to_vec()).unwrap()),
        };
        let o = m
            .forward(
                &Tensor::new(&xshape, x.to_vec()).unwrap(),
                Some(&st),
                Some(lengths),
            )
            .unwrap();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        dot(o.output.data(), &gy)
            + dot(o.h_n.data(), &gh)
            + o.c_n.map_or(0.0, |c| dot(c.data(), &gc))
    };
    let st = State {
        h: Tensor::new(&sshape, h0.clone()).unwrap(),
        c: lstm.then(|| Tensor::new(&sshape, c0.clone()).unwrap()),
    };
    let (_, tape) = model
        .forward_train(
            &Tensor::new(&xshape, x.clone()).unwrap(),
            Some(&st),
            Some(lengths),
            Dropout::Off,
        )
        .unwrap();
    let mut grads = model.zeros_like_params();
    let g = model
        .backward(
            &tape,
            Some(&Tensor::new(&oshape, gy.clone()).unwrap()),
            Some(&Tensor::new(&sshape, gh.clone()).unwrap()),
            lstm.then(|| Tensor::new(&sshape, gc.clone()).unwrap())
                .as_ref(),
            &mut grads,
        )
        .unwrap();
    let name = format!("{cfg:?} lengths {lengths:?}");
    let mut checked = 0;
    let mut cmp = |what: String, analytic: f64, numeric: f64| {
        assert!(
            FINITE_DIFF.ok(analytic, numeric),
            "{name}: d loss / d {what}: backward {analytic:e}, finite differences {numeric:e}"
        );
        checked += 1;
    };
    let entries = model.layout().entries().to_vec();
    for e in &entries {
        for k in 0..e.len() {
            let at = e.offset + k;
            let v = model.params()[at];
            model.params_mut()[at] = v + FD_STEP;
            let up = loss(&model, &x, &h0, &c0);
            model.params_mut()[at] = v - FD_STEP;
            let down = loss(&model, &x, &h0, &c0);
            model.params_mut()[at] = v;
            cmp(
                format!("{}[{k}]", e.name),
                grads[at],
                (up - down) / (2.0 * FD_STEP),
            );
        }
    }
    let fd = |v: &[f64], k: usize, f: &dyn Fn(&[f64]) -> f64| {
        let (mut a, mut b) = (v.to_vec(), v.to_vec());
        a[k] += FD_STEP;
        b[k] -= FD_STEP;
        (f(&a) - f(&b)) / (2.0 * FD_STEP)
    };
    for k in 0..x.len() {
        let num = fd(&x, k, &|v| loss(&model, v, &h0, &c0));
        cmp(format!("input[{k}]"), g.input.data()[k], num);
    }
    for k in 0..h0.len() {
        let num = fd(&h0, k, &|v| loss(&model, &x, v, &c0));
        cmp(format!("h0[{k}]"), g.h0.data()[k], num);
    }
    for k in 0..c0.len() {
        let num = fd(&c0, k, &|v| loss(&model, &x, &h0, v));
        cmp(format!("c0[{k}]"), g.c0.as_ref().unwrap().data()[k], num);
    }
    checked
}

fn all_activations() -> Vec<Activation> {
    vec![
        Activation::Relu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Affine {
            alpha: 0.7,
            beta: 0.1,
        },
        Activation::LeakyRelu { alpha: 0.1 },
        Activation::ThresholdedRelu { alpha: 0.3 },
        Activation::ScaledTanh {
            alpha: 1.3,
            beta: 0.8,
        },
        Activation::HardSigmoid {
            alpha: 0.3,
            beta: 0.4,
        },
        Activation::Elu { alpha: 0.9 },
        Activation::Softsign,
        Activation::Softplus,
    ]
}

#[test]
fn every_variant_matches_finite_differences() {
    let lens = [3, 1, 2];
    let mut cases = vec![
        RnnConfig::gru(3, 4).linear_before_reset(false),
        RnnConfig::gru(3, 4)
            .linear_before_reset(false)
            .bidirectional(true)
            .num_layers(2),
        RnnConfig::gru(3, 4).linear_before_reset(false).bias(false),
        RnnConfig::lstm(3, 4).peepholes(true),
        RnnConfig::lstm(3, 4)
            .peepholes(true)
            .bidirectional(true)
            .num_layers(2),
        RnnConfig::lstm(3, 4).input_forget(true),
        RnnConfig::lstm(3, 4)
            .input_forget(true)
            .peepholes(true)
            .bias(false),
        RnnConfig::lstm(3, 4).clip(Some(0.6)),
        RnnConfig::gru(3, 4).clip(Some(0.6)),
        RnnConfig::gru(3, 4)
            .clip(Some(0.6))
            .linear_before_reset(false),
        RnnConfig::rnn(3, 4).clip(Some(0.5)).batch_first(true),
        // Per-direction activations.
        RnnConfig::lstm(3, 4).bidirectional(true).activations(vec![
            Activation::HardSigmoid {
                alpha: 0.3,
                beta: 0.4,
            },
            Activation::Softsign,
            Activation::Elu { alpha: 0.9 },
            Activation::Sigmoid,
            Activation::ScaledTanh {
                alpha: 1.3,
                beta: 0.8,
            },
            Activation::Softplus,
        ]),
        // With the regularizers that act in evaluation too.
        RnnConfig::lstm(3, 4).peepholes(true).layer_norm(true),
        RnnConfig::gru(3, 4)
            .clip(Some(0.8))
            .layer_norm(true)
            .zoneout(0.3),
    ];
    // Every activation in every position of every cell.
    for a in all_activations() {
        cases.push(RnnConfig::rnn(3, 4).activations(vec![a]));
        cases.push(RnnConfig::gru(3, 4).activations(vec![a, Activation::Tanh]));
        cases.push(
            RnnConfig::gru(3, 4)
                .linear_before_reset(false)
                .activations(vec![Activation::Sigmoid, a]),
        );
        cases.push(RnnConfig::lstm(3, 4).activations(vec![a, Activation::Tanh, Activation::Tanh]));
        cases.push(RnnConfig::lstm(3, 4).peepholes(true).activations(vec![
            Activation::Sigmoid,
            a,
            a,
        ]));
    }
    let mut n = 0;
    for (k, cfg) in cases.iter().enumerate() {
        n += gradcheck(cfg, 3, 3, &lens, 100 + k as u64);
    }
    assert!(n > 10_000, "{n} derivatives checked");
}

/// A variant that changes nothing (a clip no activation input reaches) runs on the general
/// layer and must give the fused engine's numbers: forward, and every gradient.
#[test]
fn the_general_layer_equals_the_fused_engine() {
    for base in [
        RnnConfig::lstm(3, 5),
        RnnConfig::gru(3, 5),
        RnnConfig::rnn(3, 5),
        RnnConfig::new(Mode::RnnRelu, 3, 5),
    ] {
        for (layers, bidi, bf) in [(1, false, false), (2, true, false), (2, true, true)] {
            let cfg = base
                .clone()
                .num_layers(layers)
                .bidirectional(bidi)
                .batch_first(bf);
            let fused: Rnn<f64> = Rnn::new(cfg.clone(), 7).unwrap();
            let general: Rnn<f64> =
                Rnn::from_params(cfg.clone().clip(Some(1e30)), fused.params().to_vec()).unwrap();
            let (t, b) = (4, 3);
            let lens = [4, 2, 3];
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let xs = if bf { [b, t, 3] } else { [t, b, 3] };
            let x = Tensor::new(&xs, randn(&mut rng, t * b * 3)).unwrap();
            let d = cfg.num_directions();
            let lstm = cfg.mode == Mode::Lstm;
            let ss = [layers * d, b, 5];
            let st = State {
                h: Tensor::new(&ss, randn(&mut rng, layers * d * b * 5)).unwrap(),
                c: lstm.then(|| Tensor::new(&ss, randn(&mut rng, layers * d * b * 5)).unwrap()),
            };
            let os = if bf { [b, t, d * 5] } else { [t, b, d * 5] };
            let gy = Tensor::new(&os, randn(&mut rng, t * b * d * 5)).unwrap();
            let gh = Tensor::new(&ss, randn(&mut rng, layers * d * b * 5)).unwrap();
            let run = |m: &Rnn<f64>| {
                let (o, tape) = m
                    .forward_train(&x, Some(&st), Some(&lens), Dropout::Off)
                    .unwrap();
                let mut g = m.zeros_like_params();
                let ig = m
                    .backward(&tape, Some(&gy), Some(&gh), None, &mut g)
                    .unwrap();
                let mut all = o.output.into_data();
                all.extend(o.h_n.into_data());
                all.extend(o.c_n.map(|c| c.into_data()).unwrap_or_default());
                all.extend(g);
                all.extend(ig.input.into_data());
                all.extend(ig.h0.into_data());
                all
            };
            let (a, e) = (run(&general), run(&fused));
            assert_eq!(a.len(), e.len());
            for (k, (x, y)) in a.iter().zip(&e).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
                    "{cfg:?}: value {k}: general {x} vs fused {y}"
                );
            }
        }
    }
}

#[test]
fn variants_stream_as_the_whole_sequence_runs() {
    for cfg in [
        RnnConfig::gru(3, 4)
            .linear_before_reset(false)
            .num_layers(2),
        RnnConfig::lstm(3, 4)
            .peepholes(true)
            .input_forget(true)
            .clip(Some(0.7))
            .batch_first(true),
        RnnConfig::rnn(3, 4).activations(vec![Activation::Softsign]),
    ] {
        let m: Rnn<f64> = Rnn::new(cfg.clone(), 9).unwrap();
        let (t, b) = (5, 2);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x = randn(&mut rng, t * b * 3);
        // time-major steps; the whole sequence in the model's layout
        let whole: Vec<f64> = if cfg.batch_first {
            (0..b)
                .flat_map(|bi| (0..t).flat_map(move |ti| (0..3).map(move |k| (ti, bi, k))))
                .map(|(ti, bi, k)| x[(ti * b + bi) * 3 + k])
                .collect()
        } else {
            x.clone()
        };
        let shape = if cfg.batch_first {
            [b, t, 3]
        } else {
            [t, b, 3]
        };
        let o = m
            .forward(&Tensor::new(&shape, whole).unwrap(), None, None)
            .unwrap();
        let mut s = recur::Stream::new(&m, b).unwrap();
        for ti in 0..t {
            let hs = s.step(&x[ti * b * 3..][..b * 3]).unwrap().to_vec();
            for bi in 0..b {
                for j in 0..4 {
                    let row = if cfg.batch_first {
                        bi * t + ti
                    } else {
                        ti * b + bi
                    };
                    let want = o.output.data()[row * 4 + j];
                    assert!((hs[bi * 4 + j] - want).abs() < 1e-12, "{cfg:?} step {ti}");
                }
            }
        }
        assert_eq!(s.state().h.data(), o.h_n.data());
    }
}

#[test]
fn variants_that_do_not_apply_are_errors() {
    let bad = [
        (
            RnnConfig::gru(2, 3).peepholes(true),
            "peepholes are for an LSTM",
        ),
        (RnnConfig::rnn(2, 3).input_forget(true), "input_forget"),
        (
            RnnConfig::lstm(2, 3).linear_before_reset(false),
            "for a GRU",
        ),
        (RnnConfig::lstm(2, 3).clip(Some(-1.0)), "clip must be"),
        (
            RnnConfig::lstm(2, 3).activations(vec![Activation::Tanh]),
            "takes 3 function(s)",
        ),
        (
            RnnConfig::gru(2, 3).activations(vec![Activation::Tanh; 4]),
            "takes 2 function(s)",
        ),
        (
            RnnConfig::lstm(2, 3).proj_size(2).peepholes(true),
            "without projection",
        ),
        (
            RnnConfig::gru(2, 3)
                .linear_before_reset(false)
                .layer_norm(true),
            "layer norm",
        ),
    ];
    for (cfg, want) in bad {
        let e = Rnn::<f32>::new(cfg.clone(), 0).unwrap_err().to_string();
        assert!(e.contains(want), "{cfg:?}: {e}");
    }
    assert!(Rnn::<f32>::new(
        RnnConfig::gru(2, 3)
            .bidirectional(true)
            .activations(vec![Activation::Tanh; 4]),
        0
    )
    .is_ok());
}

#[test]
fn activation_names_parse_and_print() {
    for a in all_activations() {
        let back: Activation = a.to_string().parse().unwrap();
        assert_eq!(back, a);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Activation>(&json).unwrap(), a);
    }
    assert_eq!(
        "LeakyRelu".parse::<Activation>().unwrap(),
        Activation::LeakyRelu { alpha: 0.01 }
    );
    assert_eq!(
        "hard-sigmoid".parse::<Activation>().unwrap(),
        Activation::HardSigmoid {
            alpha: 0.2,
            beta: 0.5
        }
    );
    assert!("tanh:1".parse::<Activation>().is_err());
    assert!("swish".parse::<Activation>().is_err());
    let o = CellOptions {
        peepholes: true,
        clip: Some(2.0),
        activations: vec![Activation::Elu { alpha: 0.5 }],
        ..CellOptions::default()
    };
    let j = serde_json::to_string(&o).unwrap();
    assert_eq!(serde_json::from_str::<CellOptions>(&j).unwrap(), o);
    assert_eq!(
        serde_json::from_str::<CellOptions>("{}").unwrap(),
        CellOptions::default()
    );
}

#[test]
fn peepholes_round_trip_through_a_state_dict() {
    let cfg = RnnConfig::lstm(3, 4).peepholes(true).bidirectional(true);
    let m: Rnn<f32> = Rnn::new(cfg.clone(), 5).unwrap();
    let dir = std::env::temp_dir().join(format!("recur_variants_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("w.safetensors");
    use recur::io::state_dict::{load_rnn, save, LoadOptions, TensorFile};
    save(m.layout(), m.params(), "", &path).unwrap();
    let back: Rnn<f32> =
        load_rnn(&TensorFile::read(&path).unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(back.config(), m.config());
    assert_eq!(back.params(), m.params());
    assert!(back.param("weight_peephole_l0_reverse").is_some());
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------
// The ONNX fixtures.

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx/cases")
}

/// A tensor of a safetensors file as f64 (f32, f64 or integer data).
fn read_tensors(p: &Path) -> std::collections::HashMap<String, (Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out = std::collections::HashMap::new();
    for (name, v) in st.tensors() {
        let d = v.data();
        let vals: Vec<f64> = match v.dtype() {
            safetensors::Dtype::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            safetensors::Dtype::F64 => d
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            safetensors::Dtype::I32 => d
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            safetensors::Dtype::I64 => d
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            t => panic!("{name}: dtype {t:?}"),
        };
        out.insert(name, (v.shape().to_vec(), vals));
    }
    out
}

/// ONNX's activation list (names, alpha, beta consumed in order) as recur's.
fn onnx_activations(m: &serde_json::Value) -> Vec<Activation> {
    let names = match m.get("activations") {
        Some(v) => v.as_array().unwrap().clone(),
        None => return Vec::new(),
    };
    let list = |k: &str| -> Vec<f64> {
        m.get(k)
            .map(|v| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (alphas, betas) = (list("activation_alpha"), list("activation_beta"));
    let (mut ai, mut bi) = (0, 0);
    names
        .iter()
        .map(|n| {
            let base: Activation = n.as_str().unwrap().parse().unwrap();
            let take = |v: &[f64], i: &mut usize| {
                let x = v.get(*i).copied();
                *i += 1;
                x
            };
            match base {
                Activation::Affine { alpha, beta } => Activation::Affine {
                    alpha: take(&alphas, &mut ai).unwrap_or(alpha),
                    beta: take(&betas, &mut bi).unwrap_or(beta),
                },
                Activation::ScaledTanh { alpha, beta } => Activation::ScaledTanh {
                    alpha: take(&alphas, &mut ai).unwrap_or(alpha),
                    beta: take(&betas, &mut bi).unwrap_or(beta),
                },
                Activation::HardSigmoid { alpha, beta } => Activation::HardSigmoid {
                    alpha: take(&alphas, &mut ai).unwrap_or(alpha),
                    beta: take(&betas, &mut bi).unwrap_or(beta),
                },
                Activation::LeakyRelu { alpha } => Activation::LeakyRelu {
                    alpha: take(&alphas, &mut ai).unwrap_or(alpha),
                },
                Activation::ThresholdedRelu { alpha } => Activation::ThresholdedRelu {
                    alpha: take(&alphas, &mut ai).unwrap_or(alpha),
                },
                Activation::Elu { alpha } => Activation::Elu {
                    alpha: take(&alphas, &mut ai).unwrap_or(alpha),
                },
                a => a,
            }
        })
        .collect()
}

/// Rows of one direction's (G·H, n) ONNX matrix in PyTorch's gate order.
fn reorder(v: &[f64], blocks: &[usize], h: usize, n: usize) -> Vec<f64> {
    blocks
        .iter()
        .flat_map(|&k| v[k * h * n..(k + 1) * h * n].iter().copied())
        .collect()
}

struct Onnx {
    name: String,
    cfg: RnnConfig,
    params: Vec<f64>,
    reverse: bool,
    layout: usize,
    inputs: std::collections::HashMap<String, (Vec<usize>, Vec<f64>)>,
    expected: std::collections::HashMap<String, (Vec<usize>, Vec<f64>)>,
}

fn load_case(dir: &Path) -> Option<Onnx> {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let op = meta["op"].as_str()?;
    if meta["const_weights"].as_bool() != Some(false) {
        return None; // weights inside model.onnx: crates/recur-onnx/tests runs those
    }
    let a = &meta["attributes"];
    let inputs = read_tensors(&dir.join("inputs.safetensors"));
    let expected = read_tensors(&dir.join("expected.safetensors"));
    let (ws, w) = inputs["W"].clone();
    let (_, r) = inputs["R"].clone();
    let mode = match op {
        "LSTM" => Mode::Lstm,
        "GRU" => Mode::Gru,
        "RNN" => Mode::RnnTanh,
        _ => return None,
    };
    let g = mode.gates();
    let (nd, i) = (ws[0], ws[2]);
    let h = ws[1] / g;
    let direction = a["direction"].as_str().unwrap_or("forward");
    let layout = a["layout"].as_i64().unwrap_or(0) as usize;
    let int = |k: &str| a[k].as_i64().unwrap_or(0);
    let cell = CellOptions {
        linear_before_reset: mode != Mode::Gru || int("linear_before_reset") == 1,
        peepholes: mode == Mode::Lstm && inputs.contains_key("P"),
        input_forget: int("input_forget") == 1,
        clip: a["clip"].as_f64(),
        activations: onnx_activations(a),
    };
    let cfg = RnnConfig::new(mode, i, h)
        .bidirectional(direction == "bidirectional")
        .cell_options(cell);
    // ONNX LSTM i, o, f, c → i, f, g, o; GRU z, r, h → r, z, n.
    let blocks: &[usize] = match mode {
        Mode::Lstm => &[0, 2, 3, 1],
        Mode::Gru => &[1, 0, 2],
        _ => &[0],
    };
    let gh = g * h;
    let mut params = Vec::new();
    let mut peep = Vec::new();
    for d in 0..nd {
        params.extend(reorder(&w[d * gh * i..][..gh * i], blocks, h, i));
        params.extend(reorder(&r[d * gh * h..][..gh * h], blocks, h, h));
        let bias = match inputs.get("B") {
            Some((_, b)) => b[d * 2 * gh..][..2 * gh].to_vec(),
            None => vec![0.0; 2 * gh],
        };
        params.extend(reorder(&bias[..gh], blocks, h, 1));
        params.extend(reorder(&bias[gh..], blocks, h, 1));
        if let Some((_, p)) = inputs.get("P") {
            // ONNX i, o, f → i, f, o.
            peep.extend(reorder(&p[d * 3 * h..][..3 * h], &[0, 2, 1], h, 1));
        }
    }
    params.extend(peep);
    Some(Onnx {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        cfg,
        params,
        reverse: direction == "reverse",
        layout,
        inputs,
        expected,
    })
}

/// Runs a case through `Rnn<f64>`: ONNX's outputs (Y (S, D, B, H) or (B, S, D, H), Y_h and
/// Y_c (D, B, H) or (B, D, H)). A reverse-only node runs each sequence reversed within its
/// length; a sequence of length 0 gives zeros (as ONNX Runtime).
fn run_case(c: &Onnx) -> Vec<(&'static str, Vec<f64>)> {
    let cfg = &c.cfg;
    let model: Rnn<f64> = Rnn::from_params(cfg.clone(), c.params.clone()).unwrap();
    let (xs, x) = &c.inputs["X"];
    let (s, b) = if c.layout == 0 {
        (xs[0], xs[1])
    } else {
        (xs[1], xs[0])
    };
    let (i, h, nd) = (cfg.input_size, cfg.hidden_size, cfg.num_directions());
    let lstm = cfg.mode == Mode::Lstm;
    let lens: Vec<usize> = match c.inputs.get("sequence_lens") {
        Some((_, l)) => l.iter().map(|&v| v as usize).collect(),
        None => vec![s; b],
    };
    // The sequences of positive length, time-major.
    let keep: Vec<usize> = (0..b).filter(|&k| lens[k] > 0).collect();
    let kb = keep.len();
    let at = |t: usize, k: usize| if c.layout == 0 { t * b + k } else { k * s + t };
    let mut xk = vec![0.0; s * kb * i];
    for (n, &k) in keep.iter().enumerate() {
        for t in 0..lens[k] {
            let src = if c.reverse { lens[k] - 1 - t } else { t };
            xk[(t * kb + n) * i..][..i].copy_from_slice(&x[at(src, k) * i..][..i]);
        }
    }
    // initial states (D, B, H) or (B, D, H) → (D, kb, H)
    let state = |key: &str| -> Option<Vec<f64>> {
        let (_, v) = c.inputs.get(key)?;
        let mut o = vec![0.0; nd * kb * h];
        for d in 0..nd {
            for (n, &k) in keep.iter().enumerate() {
                let src = if c.layout == 0 {
                    (d * b + k) * h
                } else {
                    (k * nd + d) * h
                };
                o[(d * kb + n) * h..][..h].copy_from_slice(&v[src..src + h]);
            }
        }
        Some(o)
    };
    let (h0, c0) = (state("initial_h"), state("initial_c"));
    let mut y = vec![0.0; s * nd * b * h];
    let mut yh = vec![0.0; nd * b * h];
    let mut yc = vec![0.0; nd * b * h];
    if kb > 0 {
        let ss = [nd, kb, h];
        let st = State {
            h: Tensor::new(&ss, h0.unwrap_or_else(|| vec![0.0; nd * kb * h])).unwrap(),
            c: lstm
                .then(|| Tensor::new(&ss, c0.unwrap_or_else(|| vec![0.0; nd * kb * h])).unwrap()),
        };
        let kl: Vec<usize> = keep.iter().map(|&k| lens[k]).collect();
        let o = model
            .forward(&Tensor::new(&[s, kb, i], xk).unwrap(), Some(&st), Some(&kl))
            .unwrap();
        let out = o.output.data();
        for (n, &k) in keep.iter().enumerate() {
            for t in 0..lens[k] {
                let dst_t = if c.reverse { lens[k] - 1 - t } else { t };
                for d in 0..nd {
                    let dst = if c.layout == 0 {
                        ((dst_t * nd + d) * b + k) * h
                    } else {
                        ((k * s + dst_t) * nd + d) * h
                    };
                    y[dst..dst + h].copy_from_slice(&out[(t * kb + n) * nd * h + d * h..][..h]);
                }
            }
            for d in 0..nd {
                let dst = if c.layout == 0 {
                    (d * b + k) * h
                } else {
                    (k * nd + d) * h
                };
                yh[dst..dst + h].copy_from_slice(&o.h_n.data()[(d * kb + n) * h..][..h]);
                if lstm {
                    yc[dst..dst + h]
                        .copy_from_slice(&o.c_n.as_ref().unwrap().data()[(d * kb + n) * h..][..h]);
                }
            }
        }
    }
    let mut v = vec![("Y", y), ("Y_h", yh)];
    if lstm {
        v.push(("Y_c", yc));
    }
    v
}

#[test]
fn onnx_fixtures_through_rnn_config() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    let mut ran = Vec::new();
    for dir in dirs {
        let Some(case) = load_case(&dir) else {
            continue;
        };
        for (what, got) in run_case(&case) {
            // The fixture's own output names (Y, Y_h, Y_c) when the graph keeps them.
            let Some(want) = case.expected.get(what) else {
                continue;
            };
            assert_eq!(got.len(), want.1.len(), "{}: {what} size", case.name);
            for (k, (a, e)) in got.iter().zip(&want.1).enumerate() {
                // ONNX Runtime's own sigmoid and tanh are approximations (as in
                // crates/recur-onnx/tests/fixtures.rs).
                assert!(
                    (a - e).abs() <= 1e-6 + 1e-4 * e.abs(),
                    "{}: {what}[{k}] = {a}, ONNX reference {e}",
                    case.name
                );
            }
        }
        ran.push(case.name);
    }
    assert!(ran.len() >= 100, "ran {} cases: {ran:?}", ran.len());
    for must in ["gru_clip", "gru_act_softplus"] {
        assert!(ran.iter().any(|n| n == must), "{must} not run");
    }
}
