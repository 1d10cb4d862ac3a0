//! The sequence models' regularizers (classification, tagging, forecasting): the gradient of
//! the whole objective (loss + AR + TAR, with embedding dropout, dropout between layers and
//! on the head, and every regularizer inside the layers) against finite differences in f64,
//! for every head and ragged lengths, with the masks fixed by the step's key; AR and TAR
//! against their definitions; the masks drawn row by row, so that the shares of a batch sum
//! to the whole batch; the configuration in `config.json` (a plain model's keys unchanged,
//! directories without the keys load) and the options that do not fit a model refused.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::core::tolerance::{FD_STEP, FINITE_DIFF};
use recur::models::seqmodel::{
    load_dir, save_dir, Head, LmRegularizers, Pooling, SeqBatch, SeqModel, SeqModelConfig, Targets,
};
use recur::{Mode, Tensor};

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

fn all_on() -> LmRegularizers {
    LmRegularizers {
        layer_norm: true,
        input_dropout: 0.2,
        recurrent_dropout: 0.3,
        zoneout: 0.2,
        weight_drop: 0.3,
        locked_dropout: false,
        embed_dropout: 0.3,
        ar: 2.0,
        tar: 1.5,
    }
}

fn token_seqs(rng: &mut ChaCha8Rng, lengths: &[usize], v: usize) -> Vec<Vec<usize>> {
    lengths
        .iter()
        .map(|&n| (0..n).map(|_| rng.gen_range(0..v)).collect())
        .collect()
}

/// The objective of one training step with the masks of `key`, its gradient and its terms.
fn objective(
    m: &SeqModel<f64>,
    b: &SeqBatch<f64>,
    t: &Targets<f64>,
    key: u64,
) -> (f64, [Vec<f64>; 3], (f64, f64)) {
    let mut g = m.zeros_like_grads();
    let l = m.loss_and_grad_rows(b, t, 0, Some(key), &mut g).unwrap();
    (
        l.loss + l.ar + l.tar,
        [g.embed, g.rnn, g.head],
        (l.ar, l.tar),
    )
}

fn check_gradient(mut model: SeqModel<f64>, b: &SeqBatch<f64>, t: &Targets<f64>, what: &str) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // Random layer-norm gains and biases too.
    for p in model.params_mut() {
        for x in p.iter_mut() {
            *x = rng.gen_range(-0.8..0.8);
        }
    }
    let (_, g, (ar, tar)) = objective(&model, b, t, 77);
    let r = &model.config().regular;
    assert_eq!(ar > 0.0, r.ar > 0.0, "{what}: AR {ar}");
    assert_eq!(tar > 0.0, r.tar > 0.0, "{what}: TAR {tar}");
    let mut nonzero = 0;
    for (part, grads) in g.iter().enumerate() {
        for (k, &a) in grads.iter().enumerate() {
            let mut up = model.clone();
            up.params_mut()[part][k] += FD_STEP;
            let mut down = model.clone();
            down.params_mut()[part][k] -= FD_STEP;
            let num = (objective(&up, b, t, 77).0 - objective(&down, b, t, 77).0) / (2.0 * FD_STEP);
            assert!(
                FINITE_DIFF.ok(a, num),
                "{what}: part {part} [{k}]: backward {a:e}, finite differences {num:e}"
            );
            if a != 0.0 {
                nonzero += 1;
            }
        }
    }
    assert!(nonzero > 50, "{what}: {nonzero} nonzero gradients");
}

#[test]
fn classifier_and_tagger_objectives_match_finite_differences() {
    let lengths = [4usize, 2, 5, 1];
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let seqs = token_seqs(&mut rng, &lengths, 6);
    let batch = SeqBatch::<f64>::from_tokens(&seqs).unwrap();
    for (mode, head, locked) in [
        (Mode::Lstm, Head::PerSequence(Pooling::Last), false),
        (Mode::Lstm, Head::PerSequence(Pooling::Mean), true),
        (Mode::Gru, Head::PerStep, false),
        (Mode::RnnTanh, Head::PerSequence(Pooling::Last), true),
    ] {
        let mut cfg = SeqModelConfig::text_classifier(6, 3)
            .embed_size(3)
            .hidden_size(4)
            .num_layers(2)
            .mode(mode)
            .dropout(0.25)
            .head(head);
        cfg.regular = all_on();
        cfg.regular.locked_dropout = locked;
        let targets = match head {
            Head::PerStep => Targets::step_classes(
                &seqs
                    .iter()
                    .map(|s| s.iter().map(|x| x % 3).collect::<Vec<_>>())
                    .collect::<Vec<_>>(),
                batch.steps(),
            ),
            _ => Targets::Classes(vec![0, 2, 1, 2]),
        };
        let model = SeqModel::<f64>::new(cfg, 5).unwrap();
        check_gradient(
            model,
            &batch,
            &targets,
            &format!("{mode} {head:?} locked {locked}"),
        );
    }
}

#[test]
fn forecaster_objective_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let lengths = [5usize, 3, 4];
    let seqs: Vec<Vec<f64>> = lengths
        .iter()
        .map(|&n| (0..n * 2).map(|_| rng.gen_range(-1.0..1.0)).collect())
        .collect();
    let batch = SeqBatch::<f64>::from_features(&seqs, 2).unwrap();
    let mut cfg = SeqModelConfig::forecaster(2, 2)
        .hidden_size(4)
        .num_layers(2)
        .dropout(0.2);
    cfg.regular = LmRegularizers {
        embed_dropout: 0.0,
        ..all_on()
    };
    let targets = Targets::Values((0..6).map(|k| k as f64 * 0.3 - 0.7).collect());
    check_gradient(
        SeqModel::<f64>::new(cfg, 2).unwrap(),
        &batch,
        &targets,
        "forecaster",
    );
}

#[test]
fn ar_and_tar_are_their_definitions() {
    let lengths = [4usize, 1, 3];
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let seqs = token_seqs(&mut rng, &lengths, 5);
    let batch = SeqBatch::<f64>::from_tokens(&seqs).unwrap();
    let mut cfg = SeqModelConfig::text_classifier(5, 2)
        .embed_size(3)
        .hidden_size(4);
    cfg.regular.ar = 0.7;
    cfg.regular.tar = 0.3;
    let model = SeqModel::<f64>::new(cfg, 1).unwrap();
    let targets = Targets::Classes(vec![1, 0, 1]);
    let mut g = model.zeros_like_grads();
    // Nothing random: the output sequence is the evaluation pass's.
    let l = model
        .loss_and_grad_rows(&batch, &targets, 0, Some(9), &mut g)
        .unwrap();
    let plain = model.loss(&batch, &targets).unwrap();
    assert_eq!(l.loss, plain.loss, "AR/TAR are not in the reported loss");
    let (ar, tar) = {
        let (mut sq, mut n, mut dsq, mut m) = (0.0, 0, 0.0, 0);
        for s in &seqs {
            let mut x = vec![0.0; s.len() * 3];
            model.embed().unwrap().forward(s, &mut x).unwrap();
            let y = model
                .rnn()
                .forward(&Tensor::new(&[1, s.len(), 3], x).unwrap(), None, None)
                .unwrap()
                .output
                .into_data();
            sq += y.iter().map(|v| v * v).sum::<f64>();
            n += y.len();
            for k in 4..y.len() {
                dsq += (y[k] - y[k - 4]).powi(2);
                m += 1;
            }
        }
        (0.7 * sq / n as f64, 0.3 * dsq / m as f64)
    };
    assert!((l.ar - ar).abs() < 1e-12 * ar, "{} {ar}", l.ar);
    assert!((l.tar - tar).abs() < 1e-12 * tar, "{} {tar}", l.tar);
    assert_eq!(plain.ar, 0.0);
}

/// The largest difference relative to the largest magnitude.
fn rel(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-30);
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x - y).abs() / scale)
        .fold(0.0, f64::max)
}

#[test]
fn masks_are_drawn_row_by_row_and_reproducible() {
    // No AR/TAR (means over a share are not means over the batch): the shares' gradients,
    // weighted by their targets, sum to the whole batch's with every mask on.
    let lengths = [5usize, 2, 7, 3, 6, 1];
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let seqs = token_seqs(&mut rng, &lengths, 9);
    let tags: Vec<Vec<usize>> = seqs
        .iter()
        .map(|s| s.iter().map(|x| x % 4).collect())
        .collect();
    for locked in [false, true] {
        let mut cfg = SeqModelConfig::tagger(9, 4)
            .bidirectional(false)
            .embed_size(5)
            .hidden_size(6)
            .num_layers(2)
            .dropout(0.3);
        cfg.regular = LmRegularizers {
            ar: 0.0,
            tar: 0.0,
            locked_dropout: locked,
            ..all_on()
        };
        let model = SeqModel::<f64>::new(cfg, 1).unwrap();
        let batch_of = |r: std::ops::Range<usize>| {
            let b = SeqBatch::<f64>::from_tokens(&seqs[r.clone()]).unwrap();
            let t = Targets::step_classes(&tags[r], b.steps());
            (b, t)
        };
        let (b, t) = batch_of(0..6);
        let mut whole = model.zeros_like_grads();
        let lw = model
            .loss_and_grad_rows(&b, &t, 0, Some(5), &mut whole)
            .unwrap();
        // The same key gives the same step; another key other masks.
        let mut again = model.zeros_like_grads();
        let la = model
            .loss_and_grad_rows(&b, &t, 0, Some(5), &mut again)
            .unwrap();
        assert_eq!(la, lw);
        assert_eq!(again.rnn, whole.rnn);
        let mut other = model.zeros_like_grads();
        let lo = model
            .loss_and_grad_rows(&b, &t, 0, Some(6), &mut other)
            .unwrap();
        assert_ne!(lo.loss, lw.loss);
        for split in [vec![0..2, 2..6], vec![0..3, 3..4, 4..6]] {
            let mut sum = [
                vec![0.0f64; whole.embed.len()],
                vec![0.0; whole.rnn.len()],
                vec![0.0; whole.head.len()],
            ];
            let mut l = 0.0;
            for rows in split {
                let first = rows.start;
                let (b, t) = batch_of(rows);
                let mut g = model.zeros_like_grads();
                let ls = model
                    .loss_and_grad_rows(&b, &t, first, Some(5), &mut g)
                    .unwrap();
                let w = ls.count as f64 / lw.count as f64;
                l += w * ls.loss;
                for (s, part) in sum.iter_mut().zip([&g.embed, &g.rnn, &g.head]) {
                    for (a, &x) in s.iter_mut().zip(part.iter()) {
                        *a += w * x;
                    }
                }
            }
            assert!((l - lw.loss).abs() < 1e-12, "{l} {}", lw.loss);
            for (a, b) in [&whole.embed, &whole.rnn, &whole.head]
                .into_iter()
                .zip(&sum)
            {
                assert!(rel(a, b) < 1e-12, "locked {locked}: {}", rel(a, b));
            }
        }
    }
}

#[test]
fn config_json_round_trip_and_old_directories() {
    let dir = TmpDir::new("seq-reg-json");
    let plain = SeqModelConfig::text_classifier(7, 2)
        .hidden_size(4)
        .embed_size(3);
    let j = plain.to_json();
    for k in [
        "layer_norm",
        "input_dropout",
        "recurrent_dropout",
        "zoneout",
        "weight_drop",
        "locked_dropout",
        "embed_dropout",
        "ar",
        "tar",
    ] {
        assert!(j.get(k).is_none(), "a plain model writes no {k}");
    }
    let mut cfg = plain.clone().num_layers(2).dropout(0.1);
    cfg.regular = LmRegularizers {
        locked_dropout: true,
        ..all_on()
    };
    let j = cfg.to_json();
    assert_eq!(j["layer_norm"], true);
    assert_eq!(j["zoneout"].as_f64(), Some(0.2));
    assert_eq!(j["tar"].as_f64(), Some(1.5));
    assert_eq!(SeqModelConfig::from_json(&j, "c").unwrap(), cfg);
    let mut bad = j.clone();
    bad["zoneout"] = "x".into();
    let e = SeqModelConfig::from_json(&bad, "config.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("config.json") && e.contains("zoneout"), "{e}");

    // Saved and loaded: the layer-norm parameters under rnn., the same predictions.
    let model = SeqModel::<f32>::new(cfg, 4).unwrap();
    save_dir(&dir.0, &model, None).unwrap();
    let back = load_dir::<f32>(&dir.0).unwrap();
    assert_eq!(back.config(), model.config());
    let names: Vec<String> = back.state_dict().into_iter().map(|(n, _, _)| n).collect();
    assert!(names.contains(&"rnn.ln_ih_weight_l0".to_string()));
    assert!(names.contains(&"rnn.ln_c_bias_l1".to_string()));
    let b = SeqBatch::<f32>::from_tokens(&[vec![1, 2, 3], vec![4]]).unwrap();
    assert_eq!(back.forward(&b).unwrap(), model.forward(&b).unwrap());

    // A directory written before the regularizers (no keys) loads as a plain model.
    let plain_model = SeqModel::<f32>::new(plain.clone(), 4).unwrap();
    save_dir(&dir.0, &plain_model, None).unwrap();
    let text = std::fs::read_to_string(dir.path("config.json")).unwrap();
    assert!(
        !text.contains("layer_norm") && !text.contains("\"ar\""),
        "{text}"
    );
    let back = load_dir::<f32>(&dir.0).unwrap();
    assert_eq!(back.config().regular, LmRegularizers::default());
}

#[test]
fn options_that_do_not_fit_the_model_are_refused() {
    let mut f = SeqModelConfig::forecaster(2, 1);
    f.regular.embed_dropout = 0.1;
    let e = f.validate().unwrap_err().to_string();
    assert!(
        e.contains("embed_dropout") && e.contains("numeric features"),
        "{e}"
    );
    let mut t = SeqModelConfig::tagger(5, 2);
    t.regular.layer_norm = true;
    let e = SeqModel::<f32>::new(t.clone(), 0).unwrap_err().to_string();
    assert!(e.contains("unidirectional"), "{e}");
    // AR, TAR and embedding dropout work on a bidirectional stack.
    t.regular = LmRegularizers {
        embed_dropout: 0.2,
        ar: 1.0,
        tar: 1.0,
        ..LmRegularizers::default()
    };
    let m = SeqModel::<f32>::new(t, 0).unwrap();
    let b = SeqBatch::<f32>::from_tokens(&[vec![1, 2, 3], vec![4, 0]]).unwrap();
    let targets = Targets::step_classes(&[vec![0, 1, 0], vec![1, 1]], b.steps());
    let mut g = m.zeros_like_grads();
    let l = m
        .loss_and_grad_rows(&b, &targets, 0, Some(1), &mut g)
        .unwrap();
    assert!(l.ar > 0.0 && l.tar > 0.0);
}
