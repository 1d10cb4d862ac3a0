//! Sequence models (`recur::models::seqmodel`) and their metrics (`recur::analysis::metrics`): PyTorch parity of
//! whole training steps, every gradient against finite differences in f64, metrics against
//! hand-computed values, learning small generated tasks, and save/load.

use rand::{Rng, SeedableRng};
use recur::analysis::metrics::{
    accuracy, errors, repeat_last, Confusion, ForecastReport, TokenAccuracy,
};
use recur::core::tolerance::{Tol, F32_FORWARD, F32_GRAD, F64_VS_TORCH, FD_STEP, FINITE_DIFF};
use recur::io::state_dict::{load_rnn, LoadOptions, TensorFile};
use recur::models::seqmodel::{
    forecast_windows, load_dir, save_dir, BatchLoss, Head, InputKind, Loss, Normalization, Pooling,
    SeqBatch, SeqInput, SeqModel, SeqModelConfig, Targets, IGNORE, NORMALIZATION_FILE,
};
use recur::nn::{Adam, AdamConfig, Embedding, Linear};
use recur::{Mode, Real};
use std::path::PathBuf;

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

fn rng(seed: u64) -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

/// The gradients of `model` as (PyTorch name, values), in state_dict order.
fn named_grads<T: Real>(
    model: &SeqModel<T>,
    g: &recur::models::seqmodel::SeqModelGrads<T>,
) -> Vec<(String, Vec<f64>)> {
    let f = |v: &[T]| v.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
    let mut out = Vec::new();
    if model.embed().is_some() {
        out.push(("embed.weight".to_string(), f(&g.embed)));
    }
    for e in model.rnn().layout().entries() {
        out.push((format!("rnn.{}", e.name), f(&g.rnn[e.range()])));
    }
    let nw = model.head().weight().len();
    out.push(("head.weight".into(), f(&g.head[..nw])));
    out.push(("head.bias".into(), f(&g.head[nw..])));
    out
}

// ---------------------------------------------------------------------------------------------
// PyTorch parity

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/seqmodel")
}

fn meta<'a>(f: &'a TensorFile, k: &str) -> &'a str {
    f.metadata()
        .get(k)
        .map(|s| s.as_str())
        .unwrap_or_else(|| panic!("{}: no metadata '{k}'", f.source()))
}

fn meta_usize(f: &TensorFile, k: &str) -> usize {
    meta(f, k).parse().unwrap()
}

/// The model, batch and targets of a fixture, in precision `T`.
fn load_case<T: Real>(f: &TensorFile) -> (SeqModel<T>, SeqBatch<T>, Targets<T>) {
    let input = match meta(f, "input") {
        "tokens" => InputKind::Tokens {
            vocab_size: meta_usize(f, "vocab_size"),
            embed_size: meta_usize(f, "embed_size"),
        },
        _ => InputKind::Features {
            num_features: meta_usize(f, "num_features"),
        },
    };
    let head = match (meta(f, "head"), meta(f, "pooling")) {
        ("step", _) => Head::PerStep,
        (_, "last") => Head::PerSequence(Pooling::Last),
        _ => Head::PerSequence(Pooling::Mean),
    };
    let loss = match meta(f, "loss") {
        "cross_entropy" => Loss::CrossEntropy,
        _ => Loss::Mse,
    };
    let config = SeqModelConfig::new(input, head, loss, meta_usize(f, "output_size"))
        .mode(meta(f, "cell").parse().unwrap())
        .hidden_size(meta_usize(f, "hidden_size"))
        .num_layers(meta_usize(f, "num_layers"))
        .bidirectional(meta(f, "bidirectional") == "true");
    let rnn = load_rnn::<T>(
        f,
        &LoadOptions {
            prefix: Some("params.rnn".into()),
            relu: None,
            batch_first: true,
        },
    )
    .unwrap();
    let embed = match input {
        InputKind::Tokens {
            vocab_size,
            embed_size,
        } => Some(
            Embedding::from_params(
                vocab_size,
                embed_size,
                f.float::<T>("params.embed.weight").unwrap().into_data(),
            )
            .unwrap(),
        ),
        InputKind::Features { .. } => None,
    };
    let mut hp = f.float::<T>("params.head.weight").unwrap().into_data();
    hp.extend(f.float::<T>("params.head.bias").unwrap().into_data());
    let head = Linear::from_params(config.feature_size(), config.output_size, true, hp).unwrap();
    let model = SeqModel::from_parts(config.clone(), embed, rnn, head).unwrap();

    let lengths = f.lengths("lengths").unwrap();
    let steps = meta_usize(f, "steps");
    let batch = match input {
        InputKind::Tokens { .. } => SeqBatch::new(
            SeqInput::Tokens(f.lengths("input_ids").unwrap()),
            lengths,
            steps,
            0,
        ),
        InputKind::Features { num_features } => SeqBatch::new(
            SeqInput::Features(f.float::<T>("input").unwrap().into_data()),
            lengths,
            steps,
            num_features,
        ),
    }
    .unwrap();
    let targets = match loss {
        Loss::CrossEntropy => Targets::Classes(
            f.float::<f64>("targets")
                .unwrap()
                .data()
                .iter()
                .map(|&v| if v < 0.0 { IGNORE } else { v as usize })
                .collect(),
        ),
        Loss::Mse => Targets::Values(f.float::<T>("targets").unwrap().into_data()),
    };
    (model, batch, targets)
}

fn check_close(case: &str, what: &str, got: &[f64], want: &[f64], tol: Tol) {
    assert_eq!(got.len(), want.len(), "{case} {what}: length");
    for (k, (&a, &r)) in got.iter().zip(want).enumerate() {
        assert!(
            tol.ok(a, r),
            "{case} {what}[{k}]: got {a:e}, PyTorch {r:e} (|diff| {:e})",
            (a - r).abs()
        );
    }
}

fn parity<T: Real>(f: &TensorFile, case: &str, fwd: Tol, grad: Tol) {
    let (model, batch, targets) = load_case::<T>(f);
    let mut grads = model.zeros_like_grads();
    let loss = model
        .loss_and_grad(&batch, &targets, None, &mut grads)
        .unwrap();
    let want_loss = f.float::<f64>("expected.loss").unwrap().data()[0];
    check_close(case, "loss", &[loss.loss], &[want_loss], fwd);
    let out: Vec<f64> = model
        .forward(&batch)
        .unwrap()
        .iter()
        .map(|v| v.to_f64())
        .collect();
    let want_out = f.float::<f64>("expected.output").unwrap();
    check_close(case, "output", &out, want_out.data(), fwd);
    // The evaluation-mode loss is the training loss (no dropout here).
    let eval = model.loss(&batch, &targets).unwrap();
    assert_eq!(eval.count, loss.count);
    check_close(case, "eval loss", &[eval.loss], &[want_loss], fwd);
    let named = named_grads(&model, &grads);
    let expected: Vec<String> = f
        .names()
        .filter_map(|n| n.strip_prefix("expected.grad."))
        .map(String::from)
        .collect();
    assert_eq!(
        named.len(),
        expected.len(),
        "{case}: recur has {:?}, PyTorch {expected:?}",
        named.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for (name, g) in &named {
        let want = f.float::<f64>(&format!("expected.grad.{name}")).unwrap();
        check_close(case, &format!("grad {name}"), g, want.data(), grad);
    }
}

#[test]
fn training_steps_match_pytorch() {
    let mut n = 0;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    for p in paths {
        let f = TensorFile::read(&p).unwrap();
        let case = p.file_stem().unwrap().to_string_lossy().to_string();
        parity::<f64>(&f, &case, F64_VS_TORCH, F64_VS_TORCH);
        parity::<f32>(&f, &case, F32_FORWARD, F32_GRAD);
        n += 1;
    }
    // classifier_bilstm_l2_last, tagger_bilstm_step, regressor_gru_mean,
    // tagger_bigru_l2_step_mse
    assert_eq!(n, 4, "fixture count");
}

// ---------------------------------------------------------------------------------------------
// Gradients against finite differences

/// Token sequences of the given lengths, ids in 0..vocab.
fn token_seqs(lengths: &[usize], vocab: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut r = rng(seed);
    lengths
        .iter()
        .map(|&l| (0..l).map(|_| r.gen_range(0..vocab)).collect())
        .collect()
}

/// Numeric sequences of the given lengths (f features), off-centre so that standardising
/// matters.
fn feature_seqs(lengths: &[usize], f: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut r = rng(seed);
    lengths
        .iter()
        .map(|&l| {
            (0..l * f)
                .map(|k| 3.0 + (k % f) as f64 + 2.0 * r.gen_range(-1.0..1.0))
                .collect()
        })
        .collect()
}

fn targets_for(config: &SeqModelConfig, lengths: &[usize], seed: u64) -> Targets<f64> {
    let mut r = rng(seed);
    let t = *lengths.iter().max().unwrap();
    let b = lengths.len();
    let o = config.output_size;
    match (config.loss, config.head) {
        (Loss::CrossEntropy, Head::PerSequence(_)) => {
            Targets::Classes((0..b).map(|_| r.gen_range(0..o)).collect())
        }
        (Loss::CrossEntropy, Head::PerStep) => {
            let seqs: Vec<Vec<usize>> = lengths
                .iter()
                .map(|&l| {
                    (0..l)
                        .map(|k| if k == 1 { IGNORE } else { r.gen_range(0..o) })
                        .collect()
                })
                .collect();
            Targets::step_classes(&seqs, t)
        }
        (Loss::Mse, Head::PerSequence(_)) => Targets::Values(
            (0..b * o)
                .map(|_| 10.0 + 5.0 * r.gen_range(-1.0..1.0))
                .collect(),
        ),
        (Loss::Mse, Head::PerStep) => Targets::Values(
            (0..b * t * o)
                .map(|_| -4.0 + 3.0 * r.gen_range(-1.0..1.0))
                .collect(),
        ),
    }
}

/// Checks every parameter's gradient of `config` on ragged sequences against central finite
/// differences in f64 (dropout, if any, from the same seed on both sides).
fn gradcheck(config: SeqModelConfig, normalize: bool) {
    let lengths = [4, 6, 1, 3, 6];
    let mut model: SeqModel<f64> = SeqModel::new(config.clone(), 5).unwrap();
    let batch = match config.input {
        InputKind::Tokens { vocab_size, .. } => {
            SeqBatch::from_tokens(&token_seqs(&lengths, vocab_size, 1)).unwrap()
        }
        InputKind::Features { num_features } => {
            let seqs = feature_seqs(&lengths, num_features, 2);
            if normalize {
                let rows: Vec<f64> = seqs.concat();
                model
                    .set_input_norm(Some(Normalization::fit(&rows, num_features).unwrap()))
                    .unwrap();
            }
            SeqBatch::from_features(&seqs, num_features).unwrap()
        }
    };
    let targets = targets_for(&config, &lengths, 3);
    if normalize && config.loss == Loss::Mse {
        if let (Targets::Values(v), Head::PerSequence(_)) = (&targets, config.head) {
            model
                .set_target_norm(Some(Normalization::fit(v, config.output_size).unwrap()))
                .unwrap();
        }
    }
    let seed = (config.dropout > 0.0).then_some(17u64);
    let loss_of = |m: &SeqModel<f64>| -> BatchLoss {
        let mut g = m.zeros_like_grads();
        let mut r = seed.map(rng);
        m.loss_and_grad(
            &batch,
            &targets,
            r.as_mut().map(|r| r as &mut dyn rand::RngCore),
            &mut g,
        )
        .unwrap()
    };
    let mut grads = model.zeros_like_grads();
    let mut r = seed.map(rng);
    let loss = model
        .loss_and_grad(
            &batch,
            &targets,
            r.as_mut().map(|r| r as &mut dyn rand::RngCore),
            &mut grads,
        )
        .unwrap();
    assert!(loss.loss.is_finite() && loss.loss > 0.0);
    assert_eq!(loss, loss_of(&model), "the loss is a function of the seed");
    if seed.is_none() {
        assert_eq!(model.loss(&batch, &targets).unwrap(), loss);
    }
    let what = model.describe();
    let h = FD_STEP;
    let mut checked = 0;
    for module in ["embed", "rnn", "head"] {
        let n = match module {
            "embed" => grads.embed.len(),
            "rnn" => grads.rnn.len(),
            _ => grads.head.len(),
        };
        for k in 0..n {
            let eval = |delta: f64| {
                let mut m = model.clone();
                match module {
                    "embed" => m.embed_mut().unwrap().params_mut()[k] += delta,
                    "rnn" => m.rnn_mut().params_mut()[k] += delta,
                    _ => m.head_mut().params_mut()[k] += delta,
                }
                loss_of(&m).loss
            };
            let fd = (eval(h) - eval(-h)) / (2.0 * h);
            let got = match module {
                "embed" => grads.embed[k],
                "rnn" => grads.rnn[k],
                _ => grads.head[k],
            };
            assert!(
                FINITE_DIFF.ok(got, fd),
                "{what}: d loss / d {module}[{k}]: got {got:e}, finite differences {fd:e}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, model.num_params());
}

fn tokens(v: usize, e: usize) -> InputKind {
    InputKind::Tokens {
        vocab_size: v,
        embed_size: e,
    }
}

fn features(f: usize) -> InputKind {
    InputKind::Features { num_features: f }
}

#[test]
fn gradient_tokens_bilstm_last_state_classifier() {
    let c = SeqModelConfig::new(
        tokens(7, 3),
        Head::PerSequence(Pooling::Last),
        Loss::CrossEntropy,
        3,
    )
    .hidden_size(4)
    .num_layers(2)
    .bidirectional(true);
    gradcheck(c, false);
}

#[test]
fn gradient_tokens_gru_mean_pooled_classifier() {
    let c = SeqModelConfig::new(
        tokens(6, 4),
        Head::PerSequence(Pooling::Mean),
        Loss::CrossEntropy,
        4,
    )
    .mode(Mode::Gru)
    .hidden_size(5);
    gradcheck(c, false);
}

#[test]
fn gradient_tokens_bigru_tagger_with_ignored_targets() {
    let c = SeqModelConfig::new(tokens(8, 3), Head::PerStep, Loss::CrossEntropy, 5)
        .mode(Mode::Gru)
        .hidden_size(4)
        .bidirectional(true);
    gradcheck(c, false);
}

#[test]
fn gradient_tokens_unidirectional_lstm_tagger() {
    let c = SeqModelConfig::new(tokens(5, 2), Head::PerStep, Loss::CrossEntropy, 3)
        .hidden_size(3)
        .num_layers(2);
    gradcheck(c, false);
}

#[test]
fn gradient_features_birnn_last_state_regression_normalized() {
    let c = SeqModelConfig::new(features(3), Head::PerSequence(Pooling::Last), Loss::Mse, 2)
        .mode(Mode::RnnTanh)
        .hidden_size(4)
        .bidirectional(true);
    gradcheck(c, true);
}

#[test]
fn gradient_features_lstm_mean_pooled_regression() {
    let c = SeqModelConfig::new(features(2), Head::PerSequence(Pooling::Mean), Loss::Mse, 3)
        .hidden_size(4)
        .num_layers(2);
    gradcheck(c, false);
}

#[test]
fn gradient_features_bilstm_per_step_regression() {
    let c = SeqModelConfig::new(features(2), Head::PerStep, Loss::Mse, 2)
        .hidden_size(3)
        .bidirectional(true);
    gradcheck(c, true);
}

#[test]
fn gradient_features_gru_last_state_classifier_normalized() {
    let c = SeqModelConfig::series_classifier(3, 4)
        .mode(Mode::Gru)
        .hidden_size(4)
        .bidirectional(true);
    gradcheck(c, true);
}

#[test]
fn gradient_with_dropout_bilstm_classifier_and_tagger() {
    let c = SeqModelConfig::new(
        tokens(7, 3),
        Head::PerSequence(Pooling::Last),
        Loss::CrossEntropy,
        3,
    )
    .hidden_size(4)
    .num_layers(2)
    .bidirectional(true)
    .dropout(0.3);
    gradcheck(c, false);
    let t = SeqModelConfig::tagger(6, 4)
        .embed_size(3)
        .hidden_size(3)
        .num_layers(2)
        .mode(Mode::Gru)
        .dropout(0.25);
    gradcheck(t, false);
}

// ---------------------------------------------------------------------------------------------
// The model's plumbing

#[test]
fn padding_is_never_read_and_the_batch_order_does_not_matter() {
    let config = SeqModelConfig::tagger(9, 4)
        .embed_size(3)
        .hidden_size(5)
        .mode(Mode::Lstm);
    let model: SeqModel<f64> = SeqModel::new(config, 1).unwrap();
    let seqs = token_seqs(&[5, 2, 4], 9, 4);
    let batch = SeqBatch::<f64>::from_tokens(&seqs).unwrap();
    let out = model.forward(&batch).unwrap(); // (3, 5, 4)
                                              // Garbage (even out-of-range ids) at padded positions changes nothing.
    let SeqInput::Tokens(mut ids) = batch.input().clone() else {
        unreachable!()
    };
    ids[5 + 2] = 8;
    ids[5 + 4] = 1000;
    let garbage = SeqBatch::new(SeqInput::Tokens(ids), vec![5, 2, 4], 5, 0).unwrap();
    assert_eq!(model.forward(&garbage).unwrap(), out);
    // Every sequence alone gives its row of the batch.
    for (b, s) in seqs.iter().enumerate() {
        let one = model
            .forward(&SeqBatch::from_tokens(std::slice::from_ref(s)).unwrap())
            .unwrap();
        let row = &out[b * 5 * 4..][..s.len() * 4];
        for (x, y) in one.iter().zip(row) {
            assert!((x - y).abs() < 1e-14);
        }
        assert!(out[b * 20 + s.len() * 4..(b + 1) * 20]
            .iter()
            .all(|&v| v == 0.0));
    }
    let tags = model.tag(&batch).unwrap();
    assert_eq!(
        tags.iter().map(|t| t.len()).collect::<Vec<_>>(),
        vec![5, 2, 4]
    );
    assert!(model.classify(&batch).is_err());
}

#[test]
fn errors_name_what_was_expected() {
    let model: SeqModel<f32> =
        SeqModel::new(SeqModelConfig::text_classifier(5, 3).hidden_size(4), 0).unwrap();
    let err = |r: recur::Result<BatchLoss>| r.unwrap_err().to_string();
    let batch = SeqBatch::<f32>::from_tokens(&[vec![1, 2], vec![4]]).unwrap();
    let mut g = model.zeros_like_grads();
    let e = err(model.loss_and_grad(&batch, &Targets::Classes(vec![0]), None, &mut g));
    assert!(
        e.contains("expected 2 classes") && e.contains("got 1"),
        "{e}"
    );
    let e = err(model.loss_and_grad(&batch, &Targets::Classes(vec![0, 3]), None, &mut g));
    assert!(
        e.contains("sequence 1 is class 3") && e.contains("3 classes"),
        "{e}"
    );
    let e = err(model.loss(&batch, &Targets::Values(vec![0.0, 1.0])));
    assert!(e.contains("needs class ids"), "{e}");
    let e = err(model.loss(&batch, &Targets::Classes(vec![IGNORE, IGNORE])));
    assert!(e.contains("every target is ignored"), "{e}");
    let bad = SeqBatch::<f32>::from_tokens(&[vec![1, 5]]).unwrap();
    let e = model.forward(&bad).unwrap_err().to_string();
    assert!(
        e.contains("sequence 0, step 1: token id 5 is out of range for a vocabulary of 5"),
        "{e}"
    );
    let feats = SeqBatch::<f32>::from_features(&[vec![1.0, 2.0]], 2).unwrap();
    let e = model.forward(&feats).unwrap_err().to_string();
    assert!(e.contains("reads token ids"), "{e}");
    let e = SeqBatch::<f32>::from_tokens(&[vec![1], vec![]])
        .unwrap_err()
        .to_string();
    assert!(e.contains("sequence 1 is empty"), "{e}");
    let e = SeqBatch::<f32>::from_features(&[vec![1.0, f32::NAN]], 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sequence 0: step 1, feature 0 is not finite"),
        "{e}"
    );
    let e = SeqBatch::<f32>::from_features(&[vec![1.0, 2.0, 3.0]], 2)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("3 values is not a whole number of steps of 2"),
        "{e}"
    );
    let e = SeqBatch::<f32>::new(SeqInput::Tokens(vec![1, 2, 3]), vec![2, 2], 2, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected shape (2, 2)"), "{e}");
    let mut m = model.clone();
    let e = m
        .set_input_norm(Some(Normalization::new(vec![0.0], vec![1.0]).unwrap()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not token ids"), "{e}");
    let e = SeqModelConfig::text_classifier(5, 0)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 1 class"), "{e}");
    assert!(Normalization::new(vec![0.0], vec![0.0]).is_err());
}

#[test]
fn normalization_and_forecast_windows_by_hand() {
    // Columns (1, 3, 5) and (10, 10, 10): means 3 and 10, population std √(8/3) and 1 (constant).
    let rows = [1.0, 10.0, 3.0, 10.0, 5.0, 10.0];
    let n = Normalization::fit(&rows, 2).unwrap();
    assert_eq!(n.mean, vec![3.0, 10.0]);
    assert!((n.std[0] - (8.0f64 / 3.0).sqrt()).abs() < 1e-15);
    assert_eq!(n.std[1], 1.0);
    let mut x = rows.to_vec();
    n.apply(&mut x);
    assert!((x[0] + 2.0 / (8.0f64 / 3.0).sqrt()).abs() < 1e-15);
    assert_eq!(x[1], 0.0);
    n.invert(&mut x);
    for (a, b) in x.iter().zip(&rows) {
        assert!((a - b).abs() < 1e-14);
    }
    assert!(Normalization::fit(&[1.0, f64::NAN], 1).is_err());

    let series: Vec<f64> = (0..10).map(|v| v as f64).collect();
    let (inp, tgt) = forecast_windows(&series, 4, 2, 3).unwrap();
    // Windows start at 0 and 3: (10 - 4 - 2) / 3 + 1 = 2.
    assert_eq!(inp, vec![0.0, 1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(tgt, vec![4.0, 5.0, 7.0, 8.0]);
    let (inp, tgt) = forecast_windows(&series, 4, 2, 1).unwrap();
    assert_eq!(inp.len(), 5 * 4);
    assert_eq!(&tgt[8..], &[8.0, 9.0]);
    let e = forecast_windows(&series, 8, 3, 1).unwrap_err().to_string();
    assert!(e.contains("too short"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Metrics

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn metrics_classification_by_hand() {
    // gold: 0 0 0 1 1 2 2 2 2 3 ; pred: 0 1 0 1 0 2 2 1 2 1
    let gold = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3];
    let pred = [0, 1, 0, 1, 0, 2, 2, 1, 2, 1];
    assert_eq!(accuracy(&pred, &gold).unwrap(), 0.6);
    let m = Confusion::from_pairs(4, &pred, &gold).unwrap();
    assert_eq!(m.total(), 10);
    assert_eq!(m.correct(), 6);
    assert_eq!(m.count(2, 1), 1);
    assert_eq!(m.count(3, 1), 1);
    // Class 0: tp 2, predicted 3, gold 3 → p = r = 2/3, f1 = 2/3.
    assert!((m.precision(0) - 2.0 / 3.0).abs() < 1e-15);
    assert!((m.recall(0) - 2.0 / 3.0).abs() < 1e-15);
    assert!((m.f1(0) - 2.0 / 3.0).abs() < 1e-15);
    // Class 1: tp 1, predicted 4, gold 2 → p 1/4, r 1/2, f1 = 2·(1/8)/(3/4) = 1/3.
    assert_eq!(m.precision(1), 0.25);
    assert_eq!(m.recall(1), 0.5);
    assert!((m.f1(1) - 1.0 / 3.0).abs() < 1e-15);
    // Class 2: tp 3, predicted 3, gold 4 → p 1, r 3/4, f1 = 6/7.
    assert_eq!(m.precision(2), 1.0);
    assert_eq!(m.recall(2), 0.75);
    assert!((m.f1(2) - 6.0 / 7.0).abs() < 1e-15);
    // Class 3: never predicted → precision 0 (zero_division=0), recall 0, F1 0.
    assert_eq!(m.predicted(3), 0);
    assert_eq!(m.scores(3).precision, 0.0);
    assert_eq!(m.scores(3).f1, 0.0);
    assert_eq!(m.scores(3).support, 1);
    // sklearn.metrics.f1_score(gold, pred, average='macro', zero_division=0) = 0.46428571...
    let macro_f1 = (2.0 / 3.0 + 1.0 / 3.0 + 6.0 / 7.0 + 0.0) / 4.0;
    assert!((m.macro_f1() - macro_f1).abs() < 1e-15);
    assert!((m.macro_f1() - 0.464_285_714_285_714_3).abs() < 1e-15);
    // weighted: (3·2/3 + 2·1/3 + 4·6/7 + 0) / 10
    let weighted = (2.0 + 2.0 / 3.0 + 24.0 / 7.0) / 10.0;
    assert!((m.weighted_f1() - weighted).abs() < 1e-15);
    // A class with neither gold examples nor predictions: everything 0.
    let m5 = Confusion::from_pairs(5, &pred, &gold).unwrap();
    assert_eq!(m5.f1(4), 0.0);
    assert!((m5.macro_f1() - macro_f1 * 4.0 / 5.0).abs() < 1e-15);

    let labels = names(&["neg", "neutral", "pos", "mixed"]);
    let table = m.pretty(&labels);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[0].starts_with("gold \\ pred") && lines[0].ends_with("mixed"));
    let row: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(row, vec!["pos", "0", "1", "3", "0"]);
    let report = m.report(&labels);
    assert!(report.contains("neutral"), "{report}");
    let line = report
        .lines()
        .find(|l| l.trim_start().starts_with("pos"))
        .unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols, vec!["pos", "1.0000", "0.7500", "0.8571", "4"]);
    assert!(report.contains("macro avg"));

    assert!(Confusion::from_pairs(3, &[0, 3], &[0, 1]).is_err());
    assert!(accuracy(&[0], &[0, 1]).is_err());
    assert!(accuracy(&[], &[]).is_err());
    let mut a = Confusion::new(2);
    a.add(0, 1).unwrap();
    a.merge(&Confusion::from_pairs(2, &[1], &[1]).unwrap())
        .unwrap();
    assert_eq!((a.total(), a.correct()), (2, 1));
}

#[test]
fn metrics_token_accuracy_with_unknown_words() {
    let mut t = TokenAccuracy::default();
    assert_eq!(t.unknown_accuracy(), None);
    t.add_sequence(&[1, 2, 3, 4], &[1, 2, 0, 4], &[false, true, true, false])
        .unwrap();
    t.add_sequence(&[5, 5], &[5, 1], &[true, false]).unwrap();
    // 6 tokens, 4 right; unknown: 3 tokens (2 right); known: 3 tokens (2 right).
    assert_eq!((t.total, t.correct), (6, 4));
    assert!((t.accuracy() - 4.0 / 6.0).abs() < 1e-15);
    assert!((t.unknown_accuracy().unwrap() - 2.0 / 3.0).abs() < 1e-15);
    assert!((t.known_accuracy().unwrap() - 2.0 / 3.0).abs() < 1e-15);
    assert_eq!(t.unknown_rate(), 0.5);
    assert!(t.add_sequence(&[1], &[1, 2], &[false, false]).is_err());
}

#[test]
fn metrics_forecast_errors_and_naive_baseline_by_hand() {
    let e = errors(&[1.0, 2.0, 4.0, 0.0], &[2.0, 2.0, 1.0, 0.0]).unwrap();
    // |e| = 1, 0, 3, 0 → MAE 1; e² = 1, 0, 9, 0 → RMSE √(10/4).
    assert_eq!(e.mae, 1.0);
    assert!((e.rmse - 2.5f64.sqrt()).abs() < 1e-15);
    assert!(errors(&[1.0], &[f64::NAN]).is_err());
    assert!(errors(&[1.0], &[]).is_err());
    // Two windows of 3, horizon 2: repeat 3 and 7.
    let inputs = [1.0, 2.0, 3.0, 5.0, 6.0, 7.0];
    assert_eq!(
        repeat_last(&inputs, 3, 2).unwrap(),
        vec![3.0, 3.0, 7.0, 7.0]
    );
    let target = [4.0, 5.0, 7.0, 9.0];
    // Naive errors: 1, 2, 0, 2 → MAE 1.25, RMSE √(9/4) = 1.5. Model: 4, 5, 7, 8 → MAE 0.25,
    // RMSE 0.5; skill 1 - 0.5/1.5 = 2/3.
    let r = ForecastReport::new(&inputs, 3, &[4.0, 5.0, 7.0, 8.0], &target, 2).unwrap();
    assert_eq!(r.naive.mae, 1.25);
    assert_eq!(r.naive.rmse, 1.5);
    assert_eq!(r.model.mae, 0.25);
    assert_eq!(r.model.rmse, 0.5);
    assert!((r.skill() - 2.0 / 3.0).abs() < 1e-15);
    assert!(repeat_last(&inputs, 4, 1).is_err());
}

// ---------------------------------------------------------------------------------------------
// Learning small generated tasks

/// Trains `model` with Adam on minibatches of `data` for `steps` steps.
fn train<T: Real>(
    model: &mut SeqModel<T>,
    data: &[(SeqBatch<T>, Targets<T>)],
    steps: usize,
    lr: f64,
    seed: u64,
) -> f64 {
    let mut opt = Adam::new(model.num_params(), AdamConfig::default().lr(lr));
    let mut grads = model.zeros_like_grads();
    let mut r = rng(seed);
    let mut last = f64::NAN;
    for step in 0..steps {
        let (batch, targets) = &data[step % data.len()];
        grads.zero();
        last = model
            .loss_and_grad(batch, targets, Some(&mut r), &mut grads)
            .unwrap()
            .loss;
        assert!(last.is_finite());
        grads.clip_norm(5.0);
        opt.step_parts(&mut model.parts(&grads));
    }
    last
}

/// Sequences of ids 1..=8 of random lengths in `lo..=hi`.
fn random_token_seqs(n: usize, lo: usize, hi: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut r = rng(seed);
    (0..n)
        .map(|_| {
            let l = r.gen_range(lo..=hi);
            (0..l).map(|_| r.gen_range(1..=8)).collect()
        })
        .collect()
}

#[test]
fn learns_to_classify_token_sequences_by_their_first_token() {
    // The class is the first token mod 3: a one-directional GRU must carry it to the end.
    let label = |s: &[usize]| s[0] % 3;
    let make = |n, seed| -> Vec<(SeqBatch<f32>, Targets<f32>)> {
        random_token_seqs(n, 2, 12, seed)
            .chunks(32)
            .map(|c| {
                (
                    SeqBatch::from_tokens(c).unwrap(),
                    Targets::Classes(c.iter().map(|s| label(s)).collect()),
                )
            })
            .collect()
    };
    let train_data = make(1024, 1);
    let test_data = make(512, 2);
    let config = SeqModelConfig::text_classifier(9, 3)
        .mode(Mode::Gru)
        .embed_size(8)
        .hidden_size(24)
        .dropout(0.1);
    let mut model: SeqModel<f32> = SeqModel::new(config, 0).unwrap();
    train(&mut model, &train_data, 400, 1e-2, 3);
    let mut m = Confusion::new(3);
    for (batch, targets) in &test_data {
        let Targets::Classes(gold) = targets else {
            unreachable!()
        };
        for (p, g) in model.classify(batch).unwrap().into_iter().zip(gold) {
            m.add(*g, p).unwrap();
        }
    }
    eprintln!("first-token classification: accuracy {:.4}", m.accuracy());
    assert!(m.accuracy() > 0.97, "{}", m.report(&[]));
}

/// Tags of the next-token task: the next token mod 3, or 3 at the last position.
fn next_token_tags(s: &[usize]) -> Vec<usize> {
    (0..s.len())
        .map(|t| if t + 1 < s.len() { s[t + 1] % 3 } else { 3 })
        .collect()
}

/// A batch, its targets and the gold tags of every sequence.
type Tagged = (SeqBatch<f32>, Targets<f32>, Vec<Vec<usize>>);

fn tagging_accuracy(bidirectional: bool) -> f64 {
    let make = |n, seed| -> Vec<Tagged> {
        random_token_seqs(n, 1, 10, seed)
            .chunks(32)
            .map(|c| {
                let tags: Vec<Vec<usize>> = c.iter().map(|s| next_token_tags(s)).collect();
                let batch = SeqBatch::from_tokens(c).unwrap();
                let t = Targets::step_classes(&tags, batch.steps());
                (batch, t, tags)
            })
            .collect()
    };
    let train_data: Vec<_> = make(1024, 4).into_iter().map(|(b, t, _)| (b, t)).collect();
    let test_data = make(256, 5);
    let config = SeqModelConfig::tagger(9, 4)
        .embed_size(8)
        .hidden_size(16)
        .bidirectional(bidirectional);
    let mut model: SeqModel<f32> = SeqModel::new(config, 1).unwrap();
    train(&mut model, &train_data, 250, 1e-2, 6);
    let mut acc = TokenAccuracy::default();
    for (batch, _, tags) in &test_data {
        for (pred, gold) in model.tag(batch).unwrap().iter().zip(tags) {
            acc.add_sequence(pred, gold, &vec![false; gold.len()])
                .unwrap();
        }
    }
    acc.accuracy()
}

#[test]
fn learns_to_tag_with_the_next_token_only_when_bidirectional() {
    let bi = tagging_accuracy(true);
    let uni = tagging_accuracy(false);
    eprintln!("next-token tagging: bidirectional {bi:.4}, one direction {uni:.4}");
    assert!(bi > 0.98, "bidirectional tagger: {bi}");
    // One direction cannot see the next token: about chance on 3 classes for all but the
    // last position (which it can tell only from... nothing; ≈ 1/3 + tail).
    assert!(uni < 0.6, "one-directional tagger: {uni}");
}

/// A noisy wave of frequency class `k` with an offset and scale (2 features: value and its
/// square), of length `len`.
fn wave(k: usize, len: usize, r: &mut impl Rng) -> Vec<f64> {
    let omega = [0.25, 0.6, 1.3][k];
    let phase = r.gen_range(0.0..6.3);
    let (off, amp) = (50.0, 20.0);
    (0..len)
        .flat_map(|t| {
            let v = (omega * t as f64 + phase).sin() + 0.1 * r.gen_range(-1.0..1.0);
            [off + amp * v, off + amp * v * v]
        })
        .collect()
}

#[test]
fn learns_to_classify_numeric_series_with_standardised_inputs() {
    let make = |n: usize, seed| -> Vec<(Vec<f64>, usize)> {
        let mut r = rng(seed);
        (0..n)
            .map(|i| {
                let k = i % 3;
                let len = r.gen_range(8..=20);
                (wave(k, len, &mut r), k)
            })
            .collect()
    };
    let train_set = make(480, 7);
    let test_set = make(240, 8);
    let rows: Vec<f64> = train_set.iter().flat_map(|(x, _)| x.clone()).collect();
    let norm = Normalization::fit(&rows, 2).unwrap();
    assert!((norm.mean[0] - 50.0).abs() < 2.0, "{norm:?}");
    let batches = |set: &[(Vec<f64>, usize)]| -> Vec<(SeqBatch<f32>, Targets<f32>)> {
        set.chunks(24)
            .map(|c| {
                let seqs: Vec<Vec<f32>> = c
                    .iter()
                    .map(|(x, _)| x.iter().map(|&v| v as f32).collect())
                    .collect();
                (
                    SeqBatch::from_features(&seqs, 2).unwrap(),
                    Targets::Classes(c.iter().map(|(_, k)| *k).collect()),
                )
            })
            .collect()
    };
    let config = SeqModelConfig::series_classifier(2, 3)
        .hidden_size(16)
        .head(Head::PerSequence(Pooling::Mean));
    let mut model: SeqModel<f32> = SeqModel::new(config, 2).unwrap();
    model.set_input_norm(Some(norm)).unwrap();
    train(&mut model, &batches(&train_set), 300, 1e-2, 9);
    let mut pred = Vec::new();
    let mut gold = Vec::new();
    for (batch, targets) in batches(&test_set) {
        pred.extend(model.classify(&batch).unwrap());
        let Targets::Classes(g) = targets else {
            unreachable!()
        };
        gold.extend(g);
    }
    let acc = accuracy(&pred, &gold).unwrap();
    eprintln!("wave classification: accuracy {acc:.4}");
    assert!(acc > 0.95, "accuracy {acc}");

    // Save and load: bit-exact parameters, statistics and predictions.
    let dir = TmpDir::new("series");
    save_dir(&dir.0, &model, None).unwrap();
    assert!(dir.path(NORMALIZATION_FILE).exists());
    let loaded = load_dir::<f32>(&dir.0).unwrap();
    assert_eq!(loaded.config(), model.config());
    assert_eq!(loaded.input_norm(), model.input_norm());
    assert_eq!(loaded.target_norm(), None);
    assert_eq!(loaded.rnn().params(), model.rnn().params());
    assert_eq!(loaded.head().params(), model.head().params());
    for (batch, _) in batches(&test_set).iter().take(3) {
        let a = model.forward(batch).unwrap();
        let b = loaded.forward(batch).unwrap();
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}

#[test]
fn forecaster_beats_repeating_the_last_value_then_round_trips() {
    let mut r = rng(10);
    let series: Vec<f64> = (0..1400)
        .map(|t| {
            let t = t as f64;
            100.0
                + 30.0 * (2.0 * std::f64::consts::PI * t / 23.0).sin()
                + 10.0 * (2.0 * std::f64::consts::PI * t / 7.0).sin()
                + 2.0 * r.gen_range(-1.0..1.0)
        })
        .collect();
    let (window, horizon) = (24, 3);
    let split = 1100;
    let (train_x, train_y) = forecast_windows(&series[..split], window, horizon, 1).unwrap();
    let (test_x, test_y) = forecast_windows(&series[split - window..], window, horizon, 1).unwrap();
    let norm = Normalization::fit(&series[..split], 1).unwrap();
    let target_norm =
        Normalization::new(vec![norm.mean[0]; horizon], vec![norm.std[0]; horizon]).unwrap();
    let to_batches = |x: &[f64], y: &[f64], shuffle: u64| -> Vec<(SeqBatch<f32>, Targets<f32>)> {
        let n = x.len() / window;
        let mut order: Vec<usize> = (0..n).collect();
        if shuffle > 0 {
            let mut r = rng(shuffle);
            for i in (1..n).rev() {
                order.swap(i, r.gen_range(0..=i));
            }
        }
        order
            .chunks(32)
            .map(|c| {
                let seqs: Vec<Vec<f32>> = c
                    .iter()
                    .map(|&k| {
                        x[k * window..(k + 1) * window]
                            .iter()
                            .map(|&v| v as f32)
                            .collect()
                    })
                    .collect();
                let t: Vec<f32> = c
                    .iter()
                    .flat_map(|&k| y[k * horizon..(k + 1) * horizon].iter().map(|&v| v as f32))
                    .collect();
                (
                    SeqBatch::from_features(&seqs, 1).unwrap(),
                    Targets::Values(t),
                )
            })
            .collect()
    };
    let config = SeqModelConfig::forecaster(1, horizon)
        .mode(Mode::Gru)
        .hidden_size(24);
    let mut model: SeqModel<f32> = SeqModel::new(config, 3).unwrap();
    model.set_input_norm(Some(norm)).unwrap();
    model.set_target_norm(Some(target_norm)).unwrap();
    train(
        &mut model,
        &to_batches(&train_x, &train_y, 11),
        600,
        5e-3,
        12,
    );
    let test = to_batches(&test_x, &test_y, 0);
    let mut pred = Vec::new();
    for (batch, _) in &test {
        pred.extend(model.forward(batch).unwrap().iter().map(|&v| v as f64));
    }
    let report = ForecastReport::new(&test_x, window, &pred, &test_y, horizon).unwrap();
    eprintln!(
        "forecast: RMSE {:.3} (naive {:.3}), MAE {:.3} (naive {:.3}), skill {:.3}",
        report.model.rmse,
        report.naive.rmse,
        report.model.mae,
        report.naive.mae,
        report.skill()
    );
    assert!(report.skill() > 0.5, "{report:?}");

    let dir = TmpDir::new("forecast");
    save_dir(
        &dir.0,
        &model,
        Some(&serde_json::json!({"task": "forecast", "training": {"steps": 600}})),
    )
    .unwrap();
    let e = save_dir(&dir.0, &model, Some(&serde_json::json!({"loss": 1})))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"loss\" is a key of the model's configuration"),
        "{e}"
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model"], "seq_model");
    assert_eq!(cfg["loss"], "mse");
    assert_eq!(cfg["training"]["steps"], 600);
    assert_eq!(cfg["task"], "forecast");
    assert_eq!(cfg["target_normalization"], true);
    let loaded = load_dir::<f32>(&dir.0).unwrap();
    assert_eq!(loaded.target_norm(), model.target_norm());
    assert_eq!(loaded.input_norm(), model.input_norm());
    let again: Vec<f64> = test
        .iter()
        .flat_map(|(b, _)| loaded.forward(b).unwrap())
        .map(|v| v as f64)
        .collect();
    assert_eq!(again, pred);

    // A missing statistics file is an error that names it.
    std::fs::remove_file(dir.path(NORMALIZATION_FILE)).unwrap();
    let e = load_dir::<f32>(&dir.0).unwrap_err().to_string();
    assert!(e.contains(NORMALIZATION_FILE), "{e}");
}

#[test]
fn save_load_round_trip_is_bit_exact_and_checks_the_configuration() {
    let config = SeqModelConfig::tagger(12, 5)
        .embed_size(6)
        .hidden_size(7)
        .num_layers(2)
        .mode(Mode::Gru)
        .dropout(0.2);
    let model: SeqModel<f32> = SeqModel::new(config.clone(), 9).unwrap();
    let dir = TmpDir::new("tagger");
    save_dir(&dir.0, &model, None).unwrap();
    assert!(!dir.path(NORMALIZATION_FILE).exists());
    let loaded = load_dir::<f32>(&dir.0).unwrap();
    assert_eq!(loaded.config(), &config);
    let bits = |m: &SeqModel<f32>| -> Vec<u32> {
        m.state_dict()
            .iter()
            .flat_map(|(_, _, v)| v.iter().map(|x| x.to_bits()))
            .collect()
    };
    assert_eq!(bits(&loaded), bits(&model));
    let names: Vec<String> = loaded.state_dict().into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(names[0], "embed.weight");
    assert_eq!(names[1], "rnn.weight_ih_l0");
    assert_eq!(names[5], "rnn.weight_ih_l0_reverse");
    assert_eq!(&names[names.len() - 2..], ["head.weight", "head.bias"]);
    let batch = SeqBatch::<f32>::from_tokens(&token_seqs(&[3, 7, 5], 12, 3)).unwrap();
    assert_eq!(loaded.tag(&batch).unwrap(), model.tag(&batch).unwrap());

    let path = dir.path("model.safetensors");
    for bad in [
        config.clone().hidden_size(8),
        config.clone().num_layers(1),
        config.clone().bidirectional(false),
        config.clone().mode(Mode::Lstm),
        config.clone().embed_size(5),
        SeqModelConfig {
            output_size: 4,
            ..config.clone()
        },
    ] {
        let e = SeqModel::<f32>::load_weights(&path, &bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("do not fit") || e.contains("no tensor"), "{e}");
    }
    let features_cfg = SeqModelConfig {
        input: features(6),
        ..config.clone()
    };
    let e = SeqModel::<f32>::load_weights(&path, &features_cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unexpected tensor 'embed.weight'"), "{e}");
    std::fs::write(dir.path("config.json"), "{\"model\": \"char_lm\"}").unwrap();
    let e = load_dir::<f32>(&dir.0).unwrap_err().to_string();
    assert!(e.contains("not a sequence model"), "{e}");
    let e = load_dir::<f32>(dir.path("missing"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no such model directory"), "{e}");
    // The JSON of every head and input kind reads back.
    for c in [
        config.clone(),
        SeqModelConfig::text_classifier(4, 2).head(Head::PerSequence(Pooling::Mean)),
        SeqModelConfig::series_classifier(3, 5),
        SeqModelConfig::forecaster(2, 4).mode(Mode::RnnRelu),
    ] {
        assert_eq!(SeqModelConfig::from_json(&c.to_json(), "c").unwrap(), c);
    }
}
