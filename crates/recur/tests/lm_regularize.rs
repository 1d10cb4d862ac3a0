//! The language model's regularizers: the gradient of the whole objective (cross-entropy +
//! AR + TAR, with embedding dropout, locked dropout and the recurrent regularizers) against
//! finite differences in f64 with the masks fixed by the generator's seed; AR and TAR against
//! their definitions; the configuration's JSON round trip; a plain model's JSON unchanged.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::core::tolerance::{FD_STEP, FINITE_DIFF};
use recur::data::text::Chunk;
use recur::models::lm::{CharLm, CharLmConfig, LmRegularizers};
use recur::{Mode, Tensor};

fn chunk(rng: &mut ChaCha8Rng, v: usize, steps: usize, batch: usize) -> Chunk {
    let ids = |rng: &mut ChaCha8Rng| (0..steps * batch).map(|_| rng.gen_range(0..v)).collect();
    Chunk {
        input: ids(rng),
        target: ids(rng),
        steps,
        batch,
        start: 0,
    }
}

fn all_on() -> LmRegularizers {
    LmRegularizers {
        layer_norm: true,
        input_dropout: 0.2,
        recurrent_dropout: 0.3,
        zoneout: 0.2,
        weight_drop: 0.3,
        locked_dropout: true,
        embed_dropout: 0.3,
        ar: 2.0,
        tar: 1.5,
    }
}

#[test]
fn objective_gradient_matches_finite_differences() {
    for mode in [Mode::Lstm, Mode::Gru, Mode::RnnTanh] {
        let mut cfg = CharLmConfig::new(mode, 7)
            .embed_size(3)
            .hidden_size(4)
            .num_layers(2)
            .dropout(0.25);
        cfg.regular = all_on();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut model: CharLm<f64> = CharLm::new(cfg, 3).unwrap();
        // Random layer-norm gains and biases too.
        for p in model.params_mut() {
            for x in p.iter_mut() {
                *x = rng.gen_range(-1.0..1.0);
            }
        }
        let c = chunk(&mut rng, 7, 4, 3);
        let objective = |m: &CharLm<f64>| {
            let mut g = m.zeros_like_grads();
            let mut r = ChaCha8Rng::seed_from_u64(99);
            let (l, _) = m
                .loss_terms_and_grad(&c, None, Some(&mut r), &mut g)
                .unwrap();
            (l.cross_entropy + l.ar + l.tar, g, l)
        };
        let (_, g, terms) = objective(&model);
        assert!(terms.ar > 0.0 && terms.tar > 0.0);
        let analytic: Vec<Vec<f64>> = vec![g.embed.clone(), g.rnn.clone(), g.head.clone()];
        let mut nonzero = 0;
        for (part, grads) in analytic.iter().enumerate() {
            for (k, &a) in grads.iter().enumerate() {
                let mut up = model.clone();
                up.params_mut()[part][k] += FD_STEP;
                let mut down = model.clone();
                down.params_mut()[part][k] -= FD_STEP;
                let num = (objective(&up).0 - objective(&down).0) / (2.0 * FD_STEP);
                assert!(
                    FINITE_DIFF.ok(a, num),
                    "{mode} part {part} [{k}]: backward {a:e}, finite differences {num:e}"
                );
                if a != 0.0 {
                    nonzero += 1;
                }
            }
        }
        assert!(nonzero > 50, "{mode}: {nonzero}");
    }
}

#[test]
fn ar_and_tar_are_their_definitions() {
    let mut cfg = CharLmConfig::new(Mode::Lstm, 6)
        .embed_size(3)
        .hidden_size(5)
        .num_layers(1);
    cfg.regular.ar = 0.7;
    cfg.regular.tar = 0.3;
    let model: CharLm<f64> = CharLm::new(cfg, 2).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let c = chunk(&mut rng, 6, 5, 2);
    let mut g = model.zeros_like_grads();
    // No dropout of any kind: the output is the evaluation forward pass.
    let (l, _) = model.loss_terms_and_grad(&c, None, None, &mut g).unwrap();
    let mut x = vec![0.0; c.input.len() * 3];
    model.embed().forward(&c.input, &mut x).unwrap();
    let y = model
        .rnn()
        .forward(&Tensor::new(&[5, 2, 3], x).unwrap(), None, None)
        .unwrap()
        .output
        .into_data();
    let ar = 0.7 * y.iter().map(|v| v * v).sum::<f64>() / y.len() as f64;
    let tar = 0.3 * (10..50).map(|j| (y[j] - y[j - 10]).powi(2)).sum::<f64>() / 40.0;
    assert!((l.ar - ar).abs() < 1e-12, "{} vs {ar}", l.ar);
    assert!((l.tar - tar).abs() < 1e-12, "{} vs {tar}", l.tar);
}

#[test]
fn config_json_round_trip() {
    let plain = CharLmConfig::new(Mode::Gru, 9);
    let j = plain.to_json();
    assert_eq!(
        j.as_object().unwrap().len(),
        7,
        "a plain model writes no new keys: {j}"
    );
    assert_eq!(CharLmConfig::from_json(&j, "x").unwrap(), plain);
    let mut reg = plain.clone();
    reg.regular = all_on();
    let j = reg.to_json();
    assert_eq!(CharLmConfig::from_json(&j, "x").unwrap(), reg);
    let mut bad = j.clone();
    bad["zoneout"] = 1.5.into();
    assert!(CharLmConfig::from_json(&bad, "x").is_err());
    bad["zoneout"] = "a".into();
    assert!(CharLmConfig::from_json(&bad, "x").is_err());
}

#[test]
fn saved_and_loaded_with_the_layer_norm_parameters() {
    let mut cfg = CharLmConfig::new(Mode::Lstm, 8)
        .embed_size(3)
        .hidden_size(4)
        .num_layers(2);
    cfg.regular.layer_norm = true;
    cfg.regular.zoneout = 0.2;
    let mut model: CharLm<f32> = CharLm::new(cfg.clone(), 0).unwrap();
    for p in model.params_mut() {
        for (k, x) in p.iter_mut().enumerate() {
            *x = ((k * 7919) % 13) as f32 / 13.0 - 0.5;
        }
    }
    let dir = std::env::temp_dir().join(format!("recur-lmreg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    model.save_weights(&path).unwrap();
    let back = CharLm::<f32>::load_weights(&path, &cfg).unwrap();
    let ids = [1, 2, 3, 4, 5, 6];
    assert_eq!(
        back.forward(&ids, 3, 2, None).unwrap().0,
        model.forward(&ids, 3, 2, None).unwrap().0
    );
    let names: Vec<String> = model.state_dict().into_iter().map(|(n, _, _)| n).collect();
    assert!(names.contains(&"rnn.ln_hh_weight_l1".to_string()));
    // Without layer norm in the configuration, the file does not fit.
    let mut plain = cfg.clone();
    plain.regular.layer_norm = false;
    assert!(CharLm::<f32>::load_weights(&path, &plain).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn config_json_keeps_the_plain_keys_and_order_and_names_a_bad_regularizer() {
    let plain = CharLmConfig::new(Mode::Lstm, 5)
        .embed_size(2)
        .hidden_size(3)
        .num_layers(1);
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    // The keys main writes for a plain model, in the order of the written object.
    let plain_keys: Vec<String> = {
        let v = serde_json::json!({"model": "char_lm", "cell": "lstm", "vocab_size": 5,
            "embed_size": 2, "hidden_size": 3, "num_layers": 1, "dropout": 0.0});
        keys(&v)
    };
    assert_eq!(keys(&plain.to_json()), plain_keys);
    let mut on = plain.clone();
    on.regular.zoneout = 0.1;
    on.regular.layer_norm = true;
    let v = on.to_json();
    assert_eq!(v["zoneout"], 0.1);
    assert_eq!(v["layer_norm"], true);
    assert!(v.get("tar").is_none() && v.get("locked_dropout").is_none());
    assert_eq!(CharLmConfig::from_json(&v, "config.json").unwrap(), on);
    let mut bad = v.clone();
    bad["zoneout"] = "x".into();
    let e = CharLmConfig::from_json(&bad, "config.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("config.json") && e.contains("\"zoneout\""),
        "{e}"
    );
    let mut bad = v;
    bad["embed_dropout"] = 1.5.into();
    let e = CharLmConfig::from_json(&bad, "config.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("config.json") && e.contains("embed_dropout"),
        "{e}"
    );
}

#[test]
fn the_row_by_row_step_refuses_the_regularizers() {
    let mut cfg = CharLmConfig::new(Mode::Gru, 5)
        .embed_size(2)
        .hidden_size(3)
        .num_layers(1);
    cfg.regular.ar = 0.5;
    let model: CharLm<f64> = CharLm::new(cfg, 0).unwrap();
    let c = chunk(&mut ChaCha8Rng::seed_from_u64(2), 5, 3, 2);
    let mut g = model.zeros_like_grads();
    let e = model
        .loss_and_grad_rows(&c, 0..1, None, Some(7), &mut g)
        .unwrap_err()
        .to_string();
    assert!(e.contains("share of a batch"), "{e}");
}
