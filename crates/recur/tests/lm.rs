//! Character-level language modelling: `nn::Embedding`, the vocabulary and the
//! truncated-BPTT batcher of `text`, and `lm::CharLm` (gradients against finite differences in
//! f64, training on a generated text, save/load, sampling).

use rand::{Rng, SeedableRng};
use recur::data::text::{entropy_bits, unigram_bits, Batches, Chunk, Vocab};
use recur::models::lm::{load_dir, save_dir, CharLm, CharLmConfig, SampleOptions};
use recur::nn::{Adam, AdamConfig, Embedding};
use recur::{Mode, State, Tensor};

fn randn(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

// ---------------------------------------------------------------------------------------------
// Embedding

#[test]
fn embedding_init_is_standard_normal_and_seeded() {
    let e: Embedding<f64> = Embedding::new(200, 50, 7);
    let w = e.weight();
    let n = w.len() as f64;
    let mean = w.iter().sum::<f64>() / n;
    let var = w.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    assert!(mean.abs() < 0.03, "mean {mean}");
    assert!((var - 1.0).abs() < 0.05, "variance {var}");
    // Tails of a normal: about 4.6% beyond 2σ.
    let beyond = w.iter().filter(|x| x.abs() > 2.0).count() as f64 / n;
    assert!((beyond - 0.0455).abs() < 0.01, "beyond 2 sigma: {beyond}");
    let again: Embedding<f64> = Embedding::new(200, 50, 7);
    assert_eq!(again.weight(), w);
    let other: Embedding<f64> = Embedding::new(200, 50, 8);
    assert_ne!(other.weight(), w);
}

#[test]
fn embedding_gradient_matches_finite_differences() {
    let (num, dim) = (6, 4);
    let ids = [3usize, 0, 5, 3, 3, 1]; // repeated ids accumulate
    let w0 = randn(num * dim, 1);
    let r = randn(ids.len() * dim, 2); // loss = Σ r ⊙ tanh(out)
    let loss = |w: &[f64]| -> f64 {
        let e = Embedding::from_params(num, dim, w.to_vec()).unwrap();
        let mut out = vec![0.0; ids.len() * dim];
        e.forward(&ids, &mut out).unwrap();
        out.iter().zip(&r).map(|(o, r)| r * o.tanh()).sum()
    };
    let e = Embedding::from_params(num, dim, w0.clone()).unwrap();
    let mut out = vec![0.0; ids.len() * dim];
    e.forward(&ids, &mut out).unwrap();
    let dy: Vec<f64> = out
        .iter()
        .zip(&r)
        .map(|(o, r)| r * (1.0 - o.tanh().powi(2)))
        .collect();
    let mut grads = vec![0.5; num * dim]; // backward adds
    e.backward(&ids, &dy, &mut grads).unwrap();
    let h = 1e-6;
    let mut w = w0.clone();
    for k in 0..w.len() {
        let x0 = w[k];
        w[k] = x0 + h;
        let fp = loss(&w);
        w[k] = x0 - h;
        let fm = loss(&w);
        w[k] = x0;
        let fd = (fp - fm) / (2.0 * h);
        assert!(
            close(grads[k] - 0.5, fd, 1e-7),
            "weight[{k}]: got {}, want {fd}",
            grads[k] - 0.5
        );
    }
    // Rows 2 and 4 are never used: their gradient is untouched.
    assert!(grads[2 * dim..3 * dim].iter().all(|&g| g == 0.5));
    assert!(grads[4 * dim..5 * dim].iter().all(|&g| g == 0.5));
}

#[test]
fn embedding_rejects_ids_out_of_range() {
    let e: Embedding<f32> = Embedding::new(3, 2, 0);
    let mut out = vec![0.0; 4];
    let err = e.forward(&[1, 3], &mut out).unwrap_err().to_string();
    assert!(
        err.contains("ids[1] = 3") && err.contains("3 embeddings"),
        "{err}"
    );
    let mut g = e.zeros_like_params();
    assert!(e.backward(&[5, 0], &[0.0; 4], &mut g).is_err());
    assert!(Embedding::<f32>::from_params(3, 2, vec![0.0; 5]).is_err());
}

// ---------------------------------------------------------------------------------------------
// Vocabulary and batcher

#[test]
fn vocab_maps_unknown_characters_and_round_trips_json() {
    let v = Vocab::from_text("hello, world\n£");
    // <unk>, then the distinct characters in code-point order.
    assert_eq!(
        v.chars(),
        &['\n', ' ', ',', 'd', 'e', 'h', 'l', 'o', 'r', 'w', '£']
    );
    assert_eq!(v.len(), 12);
    assert_eq!(v.id('\n'), 1);
    assert_eq!(v.id('£'), 11);
    assert_eq!(v.id('z'), Vocab::UNK);
    assert_eq!(v.encode("hez"), vec![6, 5, 0]);
    assert_eq!(v.decode(&[6, 5, 0]), "he\u{FFFD}");
    assert_eq!(v.count_unknown("hello zz"), 2);
    let json = v.to_json();
    let back = Vocab::from_json(&json, "vocab.json").unwrap();
    assert_eq!(back, v);
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["tokens"][0], "<unk>");
    assert_eq!(parsed["tokens"][1], "\n");
    for bad in [
        "{",
        r#"{"type": "char", "unk_id": 0, "tokens": ["a"]}"#,
        r#"{"type": "char", "unk_id": 0, "tokens": ["<unk>", "ab"]}"#,
        r#"{"type": "char", "unk_id": 0, "tokens": ["<unk>", "a", "a"]}"#,
        r#"{"type": "word", "unk_id": 0, "tokens": ["<unk>"]}"#,
    ] {
        let e = Vocab::from_json(bad, "v.json").unwrap_err().to_string();
        assert!(e.starts_with("v.json: not a character vocabulary"), "{e}");
    }
}

#[test]
fn batcher_streams_and_chunk_order_by_hand() {
    // 14 ids, 3 streams: L = (14 - 1) / 3 = 4 steps per stream; id 13 is dropped.
    let ids: Vec<usize> = (0..14).collect();
    let b = Batches::new(&ids, 3, 3).unwrap();
    assert_eq!(b.stream_len(), 4);
    assert_eq!(b.num_chunks(), 2);
    assert_eq!(b.num_targets(), 12);
    assert_eq!(b.stream(0), vec![0, 1, 2, 3, 4]);
    assert_eq!(b.stream(1), vec![4, 5, 6, 7, 8]);
    assert_eq!(b.stream(2), vec![8, 9, 10, 11, 12]);
    let chunks: Vec<Chunk> = b.iter().collect();
    // Chunk 0: steps 0..3 of every stream, time-major (step, stream).
    assert_eq!(
        chunks[0],
        Chunk {
            input: vec![0, 4, 8, 1, 5, 9, 2, 6, 10],
            target: vec![1, 5, 9, 2, 6, 10, 3, 7, 11],
            steps: 3,
            batch: 3,
            start: 0,
        }
    );
    // Chunk 1: the remaining step; it continues where chunk 0 stopped.
    assert_eq!(
        chunks[1],
        Chunk {
            input: vec![3, 7, 11],
            target: vec![4, 8, 12],
            steps: 1,
            batch: 3,
            start: 3,
        }
    );
    // Every id but the first (and the dropped tail) is a target exactly once.
    let mut targets: Vec<usize> = chunks.iter().flat_map(|c| c.target.clone()).collect();
    targets.sort();
    assert_eq!(targets, (1..13).collect::<Vec<_>>());

    // One stream: the text in order.
    let one = Batches::new(&ids, 1, 5).unwrap();
    let c: Vec<Chunk> = one.iter().collect();
    assert_eq!(c.len(), 3);
    assert_eq!(c[0].input, vec![0, 1, 2, 3, 4]);
    assert_eq!(c[2].input, vec![10, 11, 12]);
    assert_eq!(c[2].target, vec![11, 12, 13]);

    let e = Batches::new(&ids[..3], 3, 4).unwrap_err().to_string();
    assert!(e.contains("too short for 3 streams"), "{e}");
    assert!(Batches::new(&ids, 0, 4).is_err());
    assert!(Batches::new(&ids, 2, 0).is_err());
}

#[test]
fn unigram_baselines() {
    // Uniform over 4 symbols: 2 bits.
    let ids = [1, 2, 3, 4, 1, 2, 3, 4];
    assert!((entropy_bits(&ids) - 2.0).abs() < 1e-12);
    // Add-one smoothing over 5 ids (<unk> never seen): p = 3/13 for each of 1..=4.
    let want = -(3.0f64 / 13.0).log2();
    assert!((unigram_bits(&ids, &ids, 5) - want).abs() < 1e-12);
}

// ---------------------------------------------------------------------------------------------
// CharLm gradients

/// Loss of `model` on `chunk` with dropout drawn from a generator seeded with `seed`.
fn chunk_loss(
    model: &CharLm<f64>,
    chunk: &Chunk,
    state: Option<&State<f64>>,
    seed: Option<u64>,
) -> f64 {
    let mut g = model.zeros_like_grads();
    let mut rng = seed.map(rand_chacha::ChaCha8Rng::seed_from_u64);
    model
        .loss_and_grad(
            chunk,
            state,
            rng.as_mut().map(|r| r as &mut dyn rand::RngCore),
            &mut g,
        )
        .unwrap()
        .0
}

fn gradcheck(mode: Mode, dropout: f64) {
    let v = 7;
    let cfg = CharLmConfig::new(mode, v)
        .embed_size(3)
        .hidden_size(5)
        .num_layers(2)
        .dropout(dropout);
    let model: CharLm<f64> = CharLm::new(cfg, 3).unwrap();
    let ids: Vec<usize> = randn(40, 4)
        .iter()
        .map(|x| ((x + 1.0) * 3.5) as usize % v)
        .collect();
    let batches = Batches::new(&ids, 3, 4).unwrap();
    let chunk = batches.chunk(1);
    // A carried state, as at the second chunk of a pass.
    let sh = model.rnn().state_shape(Some(3), false);
    let h = Tensor::new(&sh, randn(sh.iter().product(), 5)).unwrap();
    let c = (mode == Mode::Lstm).then(|| {
        let s = model.rnn().state_shape(Some(3), true);
        Tensor::new(&s, randn(s.iter().product(), 6)).unwrap()
    });
    let state = State { h, c };
    let seed = (dropout > 0.0).then_some(11);

    let mut grads = model.zeros_like_grads();
    let mut rng = seed.map(rand_chacha::ChaCha8Rng::seed_from_u64);
    let (loss, next) = model
        .loss_and_grad(
            &chunk,
            Some(&state),
            rng.as_mut().map(|r| r as &mut dyn rand::RngCore),
            &mut grads,
        )
        .unwrap();
    assert!(loss.is_finite() && loss > 0.0);
    assert_eq!(next.h.shape(), state.h.shape());
    assert!(
        (loss - chunk_loss(&model, &chunk, Some(&state), seed)).abs() < 1e-15,
        "the loss is a function of the seed"
    );

    // A few parameters of every module: (module, index in its flat buffer).
    let rnn_layout = model.rnn().layout();
    let at = |name: &str, k: usize| rnn_layout.get(name).unwrap().offset + k;
    let picks: Vec<(&str, usize)> = vec![
        ("embed", chunk.input[0] * 3),
        ("embed", chunk.input[4] * 3 + 2),
        ("embed", 0), // id 0 may or may not occur: 0 gradient if not
        ("rnn", at("weight_ih_l0", 1)),
        ("rnn", at("weight_hh_l0", 7)),
        ("rnn", at("bias_ih_l0", 2)),
        ("rnn", at("weight_ih_l1", 9)),
        ("rnn", at("weight_hh_l1", 3)),
        ("rnn", at("bias_hh_l1", 4)),
        ("head", 0),
        ("head", 17),
        ("head", 5 * v + 3), // a bias
    ];
    let h = 1e-6;
    for (module, k) in picks {
        let eval = |delta: f64| {
            let mut m = model.clone();
            match module {
                "embed" => m.embed_mut().params_mut()[k] += delta,
                "rnn" => m.rnn_mut().params_mut()[k] += delta,
                _ => m.head_mut().params_mut()[k] += delta,
            }
            chunk_loss(&m, &chunk, Some(&state), seed)
        };
        let fd = (eval(h) - eval(-h)) / (2.0 * h);
        let got = match module {
            "embed" => grads.embed[k],
            "rnn" => grads.rnn[k],
            _ => grads.head[k],
        };
        assert!(
            close(got, fd, 1e-6),
            "{mode} dropout {dropout}: d loss / d {module}[{k}]: got {got}, finite differences {fd}"
        );
    }
}

#[test]
fn char_lm_gradient_lstm() {
    gradcheck(Mode::Lstm, 0.0);
}

#[test]
fn char_lm_gradient_gru_with_dropout() {
    gradcheck(Mode::Gru, 0.3);
}

#[test]
fn char_lm_gradient_rnn_tanh_with_dropout() {
    gradcheck(Mode::RnnTanh, 0.2);
}

#[test]
fn forward_carries_the_state_like_one_long_pass() {
    // Two chunks with the state carried give the logits of one pass over both.
    let cfg = CharLmConfig::new(Mode::Lstm, 5)
        .embed_size(3)
        .hidden_size(4);
    let model: CharLm<f64> = CharLm::new(cfg, 1).unwrap();
    let ids = [1, 2, 3, 4, 0, 1, 2, 3, 4, 1, 3, 3];
    let (all, _) = model.forward(&ids, 12, 1, None).unwrap();
    let (a, s) = model.forward(&ids[..5], 5, 1, None).unwrap();
    let (b, _) = model.forward(&ids[5..], 7, 1, Some(&s)).unwrap();
    let joined: Vec<f64> = a.into_iter().chain(b).collect();
    for (x, y) in all.iter().zip(&joined) {
        assert!((x - y).abs() < 1e-12);
    }
    let e = model.forward(&[1, 5], 2, 1, None).unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Training end to end

/// A text from a tiny grammar: sentences "<subject> <verb> <object>." with words drawn at
/// random, so the next character is mostly determined once a word has started.
fn grammar_text(n_sentences: usize, seed: u64) -> String {
    let subjects = ["the cat", "a dog", "my friend", "she"];
    let verbs = ["sees", "likes", "eats", "finds"];
    let objects = ["fish", "the ball", "bread", "a tree"];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut s = String::new();
    for k in 0..n_sentences {
        s += subjects[rng.gen_range(0..4)];
        s.push(' ');
        s += verbs[rng.gen_range(0..4)];
        s.push(' ');
        s += objects[rng.gen_range(0..4)];
        s.push_str(if k % 5 == 4 { ".\n" } else { ". " });
    }
    s
}

#[test]
fn training_beats_the_unigram_baseline_then_save_load_and_sample() {
    let train_text = grammar_text(400, 1);
    let valid_text = grammar_text(60, 2);
    let vocab = Vocab::from_text(&train_text);
    let train = vocab.encode(&train_text);
    let valid = vocab.encode(&valid_text);
    let unigram = unigram_bits(&train, &valid, vocab.len());
    assert!(unigram > 3.5, "unigram {unigram}");

    let cfg = CharLmConfig::new(Mode::Lstm, vocab.len())
        .embed_size(16)
        .hidden_size(48)
        .num_layers(1);
    let mut model: CharLm<f32> = CharLm::new(cfg, 0).unwrap();
    let batches = Batches::new(&train, 16, 32).unwrap();
    let mut opt = Adam::new(model.num_params(), AdamConfig::default().lr(1e-2));
    let mut grads = model.zeros_like_grads();
    let before = model.evaluate(&valid, 8, 64).unwrap();
    let mut steps = 0;
    'outer: loop {
        let mut state: Option<State<f32>> = None;
        for chunk in batches.iter() {
            grads.zero();
            let (loss, next) = model
                .loss_and_grad(&chunk, state.as_ref(), None, &mut grads)
                .unwrap();
            assert!(loss.is_finite());
            grads.clip_norm(5.0);
            opt.step_parts(&mut model.parts(&grads));
            state = Some(next);
            steps += 1;
            if steps == 250 {
                break 'outer;
            }
        }
    }
    let after = model.evaluate(&valid, 8, 64).unwrap();
    eprintln!(
        "valid bpc: {:.3} at init, {:.3} after {steps} steps; unigram {unigram:.3}",
        before.bpc, after.bpc
    );
    assert_eq!(after.targets, 8 * ((valid.len() - 1) / 8));
    assert!(
        after.bpc < 0.25 * unigram,
        "valid bpc {} after {steps} steps, unigram {unigram}, at init {}",
        after.bpc,
        before.bpc
    );
    assert!((after.bpc - after.loss / std::f64::consts::LN_2).abs() < 1e-12);

    // Save, load: the same numbers.
    let dir = TmpDir::new("train");
    save_dir(&dir.0, &model, &vocab, None).unwrap();
    let (loaded, vocab2) = load_dir::<f32>(&dir.0).unwrap();
    assert_eq!(vocab2, vocab);
    assert_eq!(loaded.config(), model.config());
    let again = loaded.evaluate(&valid, 8, 64).unwrap();
    assert_eq!(again, after);
    let names: Vec<String> = model.state_dict().into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(
        names,
        [
            "embed.weight",
            "rnn.weight_ih_l0",
            "rnn.weight_hh_l0",
            "rnn.bias_ih_l0",
            "rnn.bias_hh_l0",
            "head.weight",
            "head.bias"
        ]
    );

    // Sampling: deterministic for a seed, and it has learned the words.
    let prime = vocab.encode("the cat ");
    let opts = SampleOptions {
        temperature: 0.8,
        top_k: Some(5),
        seed: 42,
        exclude: vec![Vocab::UNK],
    };
    let a = loaded.sample(&prime, 200, &opts).unwrap();
    let b = loaded.sample(&prime, 200, &opts).unwrap();
    assert_eq!(a, b);
    let c = loaded
        .sample(
            &prime,
            200,
            &SampleOptions {
                seed: 43,
                ..opts.clone()
            },
        )
        .unwrap();
    assert_ne!(a, c);
    assert!(!a.contains(&Vocab::UNK));
    let text = vocab.decode(&a);
    assert!(
        ["sees", "likes", "eats", "finds"]
            .iter()
            .any(|w| text.contains(w)),
        "{text}"
    );
    // Greedy: the most likely continuation of "the cat " is a verb.
    let greedy = SampleOptions {
        temperature: 0.0,
        ..SampleOptions::default()
    };
    let g = vocab.decode(&loaded.sample(&prime, 6, &greedy).unwrap());
    assert!(
        ["sees", "likes", "eats", "finds"]
            .iter()
            .any(|w| g.starts_with(w)),
        "greedy continuation of 'the cat ': {g:?}"
    );
}

#[test]
fn sampling_options_are_checked() {
    let model: CharLm<f32> =
        CharLm::new(CharLmConfig::new(Mode::Gru, 4).hidden_size(8), 0).unwrap();
    let bad =
        |o: SampleOptions, prime: &[usize]| model.sample(prime, 3, &o).unwrap_err().to_string();
    assert!(bad(SampleOptions::default(), &[]).contains("priming text"));
    let t = SampleOptions {
        temperature: -1.0,
        ..SampleOptions::default()
    };
    assert!(bad(t, &[1]).contains("temperature"));
    let k = SampleOptions {
        top_k: Some(0),
        ..SampleOptions::default()
    };
    assert!(bad(k, &[1]).contains("top_k"));
    let all = SampleOptions {
        exclude: vec![0, 1, 2, 3],
        ..SampleOptions::default()
    };
    assert!(bad(all, &[1]).contains("excluded"));
    // top_k = 1 is greedy whatever the seed.
    let k1 = |seed| SampleOptions {
        top_k: Some(1),
        seed,
        ..SampleOptions::default()
    };
    assert_eq!(
        model.sample(&[1, 2], 20, &k1(1)).unwrap(),
        model.sample(&[1, 2], 20, &k1(2)).unwrap()
    );
    assert_eq!(model.sample(&[1], 0, &k1(1)).unwrap(), Vec::<usize>::new());
}

#[test]
fn load_weights_checks_the_configuration() {
    let dir = TmpDir::new("mismatch");
    let cfg = CharLmConfig::new(Mode::Gru, 6).embed_size(4).hidden_size(8);
    let model: CharLm<f32> = CharLm::new(cfg.clone(), 0).unwrap();
    let path = dir.0.join("m.safetensors");
    model.save_weights(&path).unwrap();
    assert!(CharLm::<f32>::load_weights(&path, &cfg).is_ok());
    let e = CharLm::<f32>::load_weights(&path, &cfg.clone().hidden_size(9))
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not fit"), "{e}");
    let e = CharLm::<f32>::load_weights(&path, &cfg.clone().embed_size(5))
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not fit"), "{e}");
    let e = CharLm::<f32>::load_weights(
        &path,
        &CharLmConfig {
            mode: Mode::Lstm,
            ..cfg.clone()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("do not fit"), "{e}");
    let e = CharLm::<f32>::load_weights(&path, &cfg.clone().num_layers(3))
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not fit"), "{e}");
    let e = load_dir::<f32>(dir.0.join("nope")).unwrap_err().to_string();
    assert!(e.contains("no such model directory"), "{e}");
}
