//! Encoder-decoder models (`recur::models::seq2seq`): every gradient against central finite
//! differences in f64, one forward/backward pass against PyTorch fixtures
//! (`scripts/gen_seq2seq_fixtures.py`; each file's `snippet` metadata holds the PyTorch code
//! that made its numbers), greedy and beam-search decoding, learning a reversal task, save and
//! load, and metrics.

use rand::{Rng, SeedableRng};
use recur::core::tolerance::{Tol, F32_FORWARD, F32_GRAD, F64_VS_TORCH, FD_STEP, FINITE_DIFF};
use recur::data::TokenVocab;
use recur::io::state_dict::TensorFile;
use recur::models::seq2seq::{
    levenshtein, load_dir, save_dir, Attention, Batch, BeamOptions, ErrorCounts, Seq2Seq,
    Seq2SeqConfig, Seq2SeqModules,
};
use recur::nn::{Adam, AdamConfig, Embedding, Linear};
use recur::{Mode, Real, Rnn, RnnConfig};
use std::path::PathBuf;

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

const BOS: usize = TokenVocab::BOS;
const EOS: usize = TokenVocab::EOS;

/// Random sequences of ids in `4..v` with the given lengths.
fn random_seqs(lengths: &[usize], v: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    lengths
        .iter()
        .map(|&n| (0..n).map(|_| rng.gen_range(4..v)).collect())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Batches

#[test]
fn batch_layout_by_hand() {
    let src = vec![vec![4, 5, 6], vec![7]];
    let tgt = vec![vec![8], vec![9, 10, 11]];
    let b = Batch::new(&src, &tgt, BOS, EOS).unwrap();
    assert_eq!((b.len(), b.src_steps(), b.tgt_steps()), (2, 3, 4));
    // (S, B) time-major, 0 at padding.
    assert_eq!(b.src(), &[4, 7, 5, 0, 6, 0]);
    assert_eq!(b.src_lengths(), &[3, 1]);
    // Decoder input <bos> y, target y <eos>, both n + 1 long.
    assert_eq!(b.dec_input(), &[BOS, BOS, 8, 9, 0, 10, 0, 11]);
    assert_eq!(
        b.target(),
        &[8, 9, EOS as i64, 10, -100, 11, -100, EOS as i64]
    );
    assert_eq!(b.tgt_lengths(), &[2, 4]);
    assert_eq!(b.num_targets(), 6);
    // An empty target is <eos> alone; an empty source is an error.
    let e = Batch::new(&[vec![4]], &[Vec::<usize>::new()], BOS, EOS).unwrap();
    assert_eq!(e.target(), &[EOS as i64]);
    let err = Batch::new(&[vec![4], vec![]], &[vec![5], vec![5]], BOS, EOS)
        .unwrap_err()
        .to_string();
    assert!(err.contains("source 1 is empty"), "{err}");
    let err = Batch::new(&[vec![4]], &[vec![5], vec![5]], BOS, EOS)
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 sources but 2 targets"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Gradients against finite differences

/// The mean loss of `model` on `batch` (training pass, dropout drawn from `seed`).
fn batch_loss(model: &Seq2Seq<f64>, batch: &Batch, seed: Option<u64>) -> f64 {
    let mut g = model.zeros_like_grads();
    let mut rng = seed.map(rand_chacha::ChaCha8Rng::seed_from_u64);
    model
        .loss_and_grad(
            batch,
            rng.as_mut().map(|r| r as &mut dyn rand::RngCore),
            &mut g,
        )
        .unwrap()
}

/// Checks d loss / d every parameter of a model against central finite differences.
fn gradcheck(mode: Mode, attention: Attention, layers: usize, dropout: f64, bidirectional: bool) {
    let (vs, vt) = (7, 8);
    let cfg = Seq2SeqConfig::new(mode, vs, vt)
        .embed_size(3)
        .hidden_size(4)
        .num_layers(layers)
        .bidirectional(bidirectional)
        .dropout(dropout)
        .attention(attention);
    let model: Seq2Seq<f64> = Seq2Seq::new(cfg, 5).unwrap();
    // Ragged on both sides, not sorted by length; one empty target.
    let src = random_seqs(&[3, 5, 1, 4], vs, 1);
    let tgt = random_seqs(&[2, 0, 4, 3], vt, 2);
    let batch = model.batch(&src, &tgt).unwrap();
    let seed = (dropout > 0.0).then_some(9);
    let mut grads = model.zeros_like_grads();
    let mut rng = seed.map(rand_chacha::ChaCha8Rng::seed_from_u64);
    let loss = model
        .loss_and_grad(
            &batch,
            rng.as_mut().map(|r| r as &mut dyn rand::RngCore),
            &mut grads,
        )
        .unwrap();
    assert!(loss.is_finite() && loss > 0.0);
    assert_eq!(
        loss,
        batch_loss(&model, &batch, seed),
        "loss is a function of the seed"
    );
    let analytic = [
        &grads.src_embed,
        &grads.encoder,
        &grads.tgt_embed,
        &grads.decoder,
        &grads.attn,
        &grads.attn_combine,
        &grads.head,
    ];
    let names = [
        "src_embed",
        "encoder",
        "tgt_embed",
        "decoder",
        "attn",
        "attn_combine",
        "head",
    ];
    let mut checked = 0;
    let mut nonzero = [0usize; 7];
    for m in 0..7 {
        for (k, &got) in analytic[m].iter().enumerate() {
            let eval = |delta: f64| {
                let mut mm = model.clone();
                mm.params_mut()[m][k] += delta;
                batch_loss(&mm, &batch, seed)
            };
            let fd = (eval(FD_STEP) - eval(-FD_STEP)) / (2.0 * FD_STEP);
            assert!(
                FINITE_DIFF.ok(got, fd),
                "{mode} {attention} L{layers} bidirectional {bidirectional} dropout {dropout}: d loss / d {}[{k}]: got {got:e}, finite differences {fd:e}",
                names[m]
            );
            checked += 1;
            nonzero[m] += usize::from(got != 0.0);
        }
    }
    assert_eq!(checked, model.num_params());
    // Every module present gets a gradient (the check above is not vacuous).
    for m in 0..7 {
        assert_eq!(
            nonzero[m] > 0,
            !analytic[m].is_empty(),
            "{}: {} of {} gradients are non-zero",
            names[m],
            nonzero[m],
            analytic[m].len()
        );
    }
}

#[test]
fn gradients_lstm_general_attention_two_layers() {
    gradcheck(Mode::Lstm, Attention::General, 2, 0.0, false);
}

#[test]
fn gradients_gru_dot_attention() {
    gradcheck(Mode::Gru, Attention::Dot, 1, 0.0, false);
}

#[test]
fn gradients_lstm_without_attention() {
    gradcheck(Mode::Lstm, Attention::None, 1, 0.0, false);
}

#[test]
fn gradients_gru_without_attention_two_layers() {
    gradcheck(Mode::Gru, Attention::None, 2, 0.0, false);
}

#[test]
fn gradients_rnn_tanh_general_attention() {
    gradcheck(Mode::RnnTanh, Attention::General, 1, 0.0, false);
}

#[test]
fn gradients_lstm_general_attention_bidirectional_encoder_two_layers() {
    gradcheck(Mode::Lstm, Attention::General, 2, 0.0, true);
}

#[test]
fn gradients_gru_without_attention_bidirectional_encoder() {
    gradcheck(Mode::Gru, Attention::None, 1, 0.0, true);
}

#[test]
fn gradients_gru_general_attention_with_dropout() {
    gradcheck(Mode::Gru, Attention::General, 2, 0.3, false);
}

// ---------------------------------------------------------------------------------------------
// PyTorch parity

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/seq2seq")
}

/// Sequences stored flat with their lengths.
fn split_flat(f: &TensorFile, name: &str) -> Vec<Vec<usize>> {
    let flat = f.lengths(&format!("{name}.flat")).unwrap();
    let lens = f.lengths(&format!("{name}.lengths")).unwrap();
    let mut at = 0;
    lens.iter()
        .map(|&n| {
            at += n;
            flat[at - n..at].to_vec()
        })
        .collect()
}

fn meta_usize(f: &TensorFile, k: &str) -> usize {
    f.metadata()[k].parse().unwrap()
}

/// The fixture's model, batch and file.
fn load_fixture<T: Real>(path: &std::path::Path) -> (Seq2Seq<T>, Batch, TensorFile) {
    let f = TensorFile::read(path).unwrap();
    let cfg = Seq2SeqConfig::new(
        f.metadata()["mode"].parse().unwrap(),
        meta_usize(&f, "src_vocab_size"),
        meta_usize(&f, "tgt_vocab_size"),
    )
    .embed_size(meta_usize(&f, "embed_size"))
    .hidden_size(meta_usize(&f, "hidden_size"))
    .num_layers(meta_usize(&f, "num_layers"))
    .bidirectional(f.metadata()["bidirectional"] == "true")
    .attention(f.metadata()["attention"].parse().unwrap())
    .special_ids(meta_usize(&f, "bos_id"), meta_usize(&f, "eos_id"));
    let model = Seq2Seq::<T>::from_tensor_file(&f, "params.", &cfg).unwrap();
    let batch = model
        .batch(&split_flat(&f, "sources"), &split_flat(&f, "targets"))
        .unwrap();
    (model, batch, f)
}

fn check_close(what: &str, got: &[f64], want: &[f64], tol: Tol, failures: &mut Vec<String>) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some((i, (a, r))) = got
        .iter()
        .zip(want)
        .enumerate()
        .find(|(_, (&a, &r))| !tol.ok(a, r))
    {
        failures.push(format!("{what}[{i}]: got {a:e}, PyTorch {r:e}"));
    }
}

fn parity<T: Real>(loss_tol: Tol, grad_tol: Tol) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "fixtures: {files:?}");
    let mut failures = Vec::new();
    let mut attentions = std::collections::BTreeSet::new();
    let mut bidirectional = 0;
    for path in &files {
        let case = path.file_stem().unwrap().to_string_lossy().to_string();
        let (model, batch, f) = load_fixture::<T>(path);
        attentions.insert(model.config().attention.name());
        bidirectional += usize::from(model.config().bidirectional);
        let snippet = &f.metadata()["snippet"];
        assert!(snippet.contains("loss.backward()"), "{case}: snippet");
        // Logits at every predicted position (rows past a target's end are padding).
        let v = model.config().tgt_vocab_size;
        let logits = model.logits(&batch).unwrap();
        let want = f.float::<f64>("expected.logits").unwrap();
        assert_eq!(want.shape(), &[batch.tgt_steps(), batch.len(), v], "{case}");
        let (mut got_rows, mut want_rows) = (vec![], vec![]);
        for (r, &y) in batch.target().iter().enumerate() {
            if y != -100 {
                got_rows.extend(logits[r * v..(r + 1) * v].iter().map(|x| x.to_f64()));
                want_rows.extend_from_slice(&want.data()[r * v..(r + 1) * v]);
            }
        }
        assert_eq!(got_rows.len(), batch.num_targets() * v);
        check_close(
            &format!("{case} logits"),
            &got_rows,
            &want_rows,
            loss_tol,
            &mut failures,
        );
        // Loss and every gradient.
        let mut grads = model.zeros_like_grads();
        let loss = model.loss_and_grad(&batch, None, &mut grads).unwrap();
        let want_loss = f.float::<f64>("expected.loss").unwrap().data()[0];
        check_close(
            &format!("{case} loss"),
            &[loss],
            &[want_loss],
            loss_tol,
            &mut failures,
        );
        let (eval_sum, n) = model.loss(&batch).unwrap();
        check_close(
            &format!("{case} eval loss"),
            &[eval_sum / n as f64],
            &[want_loss],
            loss_tol,
            &mut failures,
        );
        // Put the gradients in a model of the same shape to read them by name.
        let mut gm = model.clone();
        for (p, g) in gm.params_mut().into_iter().zip([
            &grads.src_embed,
            &grads.encoder,
            &grads.tgt_embed,
            &grads.decoder,
            &grads.attn,
            &grads.attn_combine,
            &grads.head,
        ]) {
            p.copy_from_slice(g);
        }
        let mut n_grads = 0;
        for (name, shape, g) in gm.state_dict() {
            let want = f.float::<f64>(&format!("expected.grad.{name}")).unwrap();
            assert_eq!(want.shape(), shape.as_slice(), "{case} {name}");
            let got: Vec<f64> = g.iter().map(|x| x.to_f64()).collect();
            check_close(
                &format!("{case} grad {name}"),
                &got,
                want.data(),
                grad_tol,
                &mut failures,
            );
            n_grads += 1;
        }
        let expected_grads = f
            .names()
            .filter(|n| n.starts_with("expected.grad."))
            .count();
        assert_eq!(
            n_grads, expected_grads,
            "{case}: every PyTorch gradient is compared"
        );
    }
    assert_eq!(attentions.len(), 3, "cases cover none, dot and general");
    assert!(bidirectional >= 2, "cases cover bidirectional encoders");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn matches_pytorch_in_f64() {
    parity::<f64>(F64_VS_TORCH, F64_VS_TORCH);
}

#[test]
fn matches_pytorch_in_f32() {
    parity::<f32>(F32_FORWARD, F32_GRAD);
}

// ---------------------------------------------------------------------------------------------
// Decoding

#[test]
fn beam_of_one_is_greedy_and_scores_match_teacher_forcing() {
    for (mode, attention, bidirectional) in [
        (Mode::Lstm, Attention::General, false),
        (Mode::Gru, Attention::Dot, false),
        (Mode::RnnTanh, Attention::None, false),
        (Mode::Lstm, Attention::Dot, true),
    ] {
        let cfg = Seq2SeqConfig::new(mode, 9, 7)
            .embed_size(6)
            .hidden_size(10)
            .num_layers(2)
            .bidirectional(bidirectional)
            .attention(attention);
        let model: Seq2Seq<f64> = Seq2Seq::new(cfg, 11).unwrap();
        let src = random_seqs(&[4, 1, 6, 3, 5, 2, 6], 9, 3);
        let greedy = model.greedy(&src, 8).unwrap();
        let beam1 = model
            .beam_search(
                &src,
                &BeamOptions {
                    beam_size: 1,
                    max_len: 8,
                    length_penalty: 0.0,
                },
            )
            .unwrap();
        let beam1_tokens: Vec<Vec<usize>> = beam1.iter().map(|h| h.tokens.clone()).collect();
        assert_eq!(beam1_tokens, greedy, "{mode} {attention}");
        // Some outputs end with <eos>, some are cut at max_len (an untrained model).
        for (h, g) in beam1.iter().zip(&greedy) {
            assert_eq!(h.finished, g.len() < 8);
        }
        // The step-by-step score is the teacher-forced log-likelihood of the same output
        // (with <eos> when the hypothesis ended).
        for beam_size in [1, 3] {
            let hyps = model
                .beam_search(
                    &src,
                    &BeamOptions {
                        beam_size,
                        max_len: 8,
                        length_penalty: 0.0,
                    },
                )
                .unwrap();
            for (i, h) in hyps.iter().enumerate() {
                if !h.finished {
                    continue;
                }
                let b = model.batch(&[&src[i]], &[&h.tokens]).unwrap();
                let ll = model.log_likelihood(&b).unwrap()[0];
                assert!(
                    (h.log_prob - ll).abs() < 1e-9,
                    "{mode} {attention} k={beam_size} source {i}: beam {} teacher forcing {ll}",
                    h.log_prob
                );
                assert_eq!(h.score, h.log_prob);
            }
        }
    }
}

/// A model whose next-id distribution depends only on the previous id, by a table: a one-hot
/// embedding, an RNN (tanh) whose h is tanh(3)·onehot(previous id) (no recurrence), and a head
/// that turns it back into `table[previous]` as logits.
fn bigram_model(table: &[Vec<f64>]) -> Seq2Seq<f64> {
    let v = table.len();
    let (e, h) = (v, v);
    let cfg = Seq2SeqConfig::new(Mode::RnnTanh, 5, v)
        .embed_size(e)
        .hidden_size(h)
        .attention(Attention::None);
    let mut eye = vec![0.0; v * v];
    for k in 0..v {
        eye[k * v + k] = 1.0;
    }
    let rnn_cfg = RnnConfig::rnn(e, h).bias(true);
    // weight_ih = 3·I, weight_hh = 0, biases 0.
    let mut rnn_params = eye.iter().map(|x| 3.0 * x).collect::<Vec<f64>>();
    rnn_params.extend(vec![0.0; h * h + 2 * h]);
    let decoder = Rnn::from_params(rnn_cfg.clone(), rnn_params).unwrap();
    let encoder: Rnn<f64> = Rnn::new(rnn_cfg, 0).unwrap();
    // head.weight[next][prev] = table[prev][next] / tanh(3), bias 0.
    let s = 3.0f64.tanh();
    let mut head = vec![0.0; v * h + v];
    for prev in 0..v {
        for next in 0..v {
            head[next * h + prev] = table[prev][next] / s;
        }
    }
    Seq2Seq::from_modules(
        cfg,
        Seq2SeqModules {
            src_embed: Embedding::new(5, e, 0),
            encoder,
            tgt_embed: Embedding::from_params(v, e, eye).unwrap(),
            decoder,
            attn: None,
            attn_combine: None,
            head: Linear::from_params(h, v, true, head).unwrap(),
        },
    )
    .unwrap()
}

#[test]
fn beam_search_beats_myopic_greedy_decoding() {
    // Ids: 0 <pad>, 1 <unk>, 2 <bos>, 3 <eos>, 4 'A', 5 'B', 6..=9 fillers.
    let ln = |p: f64| p.ln();
    let tiny = -30.0;
    let mut table = vec![vec![tiny; 10]; 10];
    // After <bos>: A 0.40, B 0.35, <eos> 0.25.
    table[BOS][4] = ln(0.40);
    table[BOS][5] = ln(0.35);
    table[BOS][EOS] = ln(0.25);
    // After A: anything of 6..=9 (0.2 each) or <eos> (0.2): every continuation is unlikely.
    for id in [EOS, 6, 7, 8, 9] {
        table[4][id] = ln(0.2);
    }
    // After B: <eos> almost surely.
    table[5][EOS] = ln(0.99);
    table[5][6] = ln(0.01);
    // After a filler: <eos>.
    for row in &mut table[6..=9] {
        row[EOS] = 0.0;
    }
    let model = bigram_model(&table);
    let src = vec![vec![4, 4]];
    let greedy = model.greedy(&src, 5).unwrap();
    // Greedy takes A (0.40), then the first of the equally likely ids, <eos>: 0.40·0.2 = 0.08.
    assert_eq!(greedy, vec![vec![4]]);
    let opts = BeamOptions {
        beam_size: 2,
        max_len: 5,
        length_penalty: 0.0,
    };
    let beam = model.beam_search(&src, &opts).unwrap();
    // B <eos>: 0.35·0.99 = 0.3465.
    assert_eq!(beam[0].tokens, vec![5]);
    assert!(beam[0].finished);
    let ll = |tokens: &[usize]| {
        let b = model.batch(&src, &[tokens]).unwrap();
        model.log_likelihood(&b).unwrap()[0]
    };
    let (g, bm) = (ll(&greedy[0]), ll(&beam[0].tokens));
    assert!((g - (0.40f64 * 0.2).ln()).abs() < 1e-6, "greedy {g}");
    assert!((bm - (0.35f64 * 0.99).ln()).abs() < 1e-6, "beam {bm}");
    assert!((beam[0].log_prob - bm).abs() < 1e-9);
    assert!(bm > g);
    // The best of all outputs (exhaustively, up to 3 ids) is the beam's.
    let mut best = (f64::NEG_INFINITY, vec![]);
    let ids: Vec<usize> = (4..10).collect();
    let mut outs: Vec<Vec<usize>> = vec![vec![]];
    for len in 1..=3 {
        let mut more = vec![];
        for o in outs.iter().filter(|o| o.len() == len - 1) {
            for &id in &ids {
                let mut x = o.clone();
                x.push(id);
                more.push(x);
            }
        }
        outs.extend(more);
    }
    for o in &outs {
        let l = ll(o);
        if l > best.0 {
            best = (l, o.clone());
        }
    }
    assert_eq!(best.1, beam[0].tokens);

    // Length normalization (α = 1): scores are log p over the length, <eos> included; B <eos>
    // (ln 0.3465 / 2 = -0.53) still beats <eos> alone (ln 0.25 = -1.39) and A <eos> (-1.26).
    let norm = model
        .beam_search(
            &src,
            &BeamOptions {
                length_penalty: 1.0,
                beam_size: 3,
                ..opts.clone()
            },
        )
        .unwrap();
    assert_eq!(norm[0].tokens, vec![5]);
    assert!((norm[0].score - norm[0].log_prob / 2.0).abs() < 1e-12);
    // Options are checked.
    for bad in [
        BeamOptions {
            beam_size: 0,
            ..opts.clone()
        },
        BeamOptions {
            length_penalty: -1.0,
            ..opts.clone()
        },
    ] {
        assert!(model.beam_search(&src, &bad).is_err());
    }
    let e = model.greedy(&[vec![5]], 3).unwrap_err().to_string();
    assert!(
        e.contains("out of range for a source vocabulary of 5"),
        "{e}"
    );
}

#[test]
fn a_beam_that_holds_every_prefix_is_exhaustive_search() {
    // 6 target ids; outputs of up to 2 ids then <eos>: at most 6² = 36 live prefixes.
    let cfg = Seq2SeqConfig::new(Mode::Lstm, 7, 6)
        .embed_size(4)
        .hidden_size(5)
        .attention(Attention::General);
    let model: Seq2Seq<f64> = Seq2Seq::new(cfg, 21).unwrap();
    let sources = random_seqs(&[3, 1, 5], 7, 8);
    for alpha in [0.0, 0.7] {
        let opts = BeamOptions {
            beam_size: 36,
            max_len: 3,
            length_penalty: alpha,
        };
        let hyps = model.beam_search(&sources, &opts).unwrap();
        for (src, h) in sources.iter().zip(&hyps) {
            let mut outs: Vec<Vec<usize>> = vec![vec![]];
            for a in (0..6).filter(|&a| a != EOS) {
                outs.push(vec![a]);
                for b in (0..6).filter(|&b| b != EOS) {
                    outs.push(vec![a, b]);
                }
            }
            let batch = model.batch(&vec![src.clone(); outs.len()], &outs).unwrap();
            let ll = model.log_likelihood(&batch).unwrap();
            let score = |k: usize| ll[k] / ((outs[k].len() + 1) as f64).powf(alpha);
            let best = (0..outs.len())
                .max_by(|&a, &b| score(a).total_cmp(&score(b)))
                .unwrap();
            assert!(h.finished);
            assert_eq!(h.tokens, outs[best], "alpha {alpha}");
            assert!((h.score - score(best)).abs() < 1e-9, "alpha {alpha}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Learning

/// Random sequences over ids 4..10 of lengths 3..=7, and their reversals.
fn reversal_task(n: usize, seed: u64) -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let src: Vec<Vec<usize>> = (0..n)
        .map(|_| {
            let len = rng.gen_range(3..=7);
            (0..len).map(|_| rng.gen_range(4..10)).collect()
        })
        .collect();
    let tgt = src
        .iter()
        .map(|s| s.iter().rev().copied().collect())
        .collect();
    (src, tgt)
}

#[test]
fn learns_to_reverse_then_save_and_load() {
    let (src, tgt) = reversal_task(96, 1);
    let cfg = Seq2SeqConfig::new(Mode::Gru, 10, 10)
        .embed_size(16)
        .hidden_size(48)
        .attention(Attention::General);
    let mut model: Seq2Seq<f32> = Seq2Seq::new(cfg, 0).unwrap();
    let mut opt = Adam::new(model.num_params(), AdamConfig::default().lr(1e-2));
    let mut grads = model.zeros_like_grads();
    let batches: Vec<Batch> = src
        .chunks(16)
        .zip(tgt.chunks(16))
        .map(|(s, t)| model.batch(s, t).unwrap())
        .collect();
    let exact = |m: &Seq2Seq<f32>| {
        let out = m.greedy(&src, 12).unwrap();
        let mut counts = ErrorCounts::default();
        for (o, t) in out.iter().zip(&tgt) {
            counts.add(o, &[t]);
        }
        counts
    };
    let before = exact(&model);
    let mut epochs = 0;
    let mut loss = f64::NAN;
    while epochs < 150 {
        for b in &batches {
            grads.zero();
            loss = model.loss_and_grad(b, None, &mut grads).unwrap();
            grads.clip_norm(5.0);
            opt.step_parts(&mut model.parts(&grads));
        }
        epochs += 1;
        if epochs % 10 == 0 && exact(&model).exact == src.len() {
            break;
        }
    }
    let after = exact(&model);
    eprintln!(
        "reversal: exact match {:.3} -> {:.3} after {epochs} epochs (loss {loss:.4})",
        before.exact_match(),
        after.exact_match()
    );
    assert!(before.exact_match() < 0.05);
    assert_eq!(
        after.exact,
        src.len(),
        "exact match {}",
        after.exact_match()
    );
    assert_eq!(after.token_error_rate(), 0.0);
    let beam = model
        .beam_search(
            &src,
            &BeamOptions {
                beam_size: 3,
                max_len: 12,
                length_penalty: 0.0,
            },
        )
        .unwrap();
    let beam_tokens: Vec<Vec<usize>> = beam.into_iter().map(|h| h.tokens).collect();
    assert_eq!(beam_tokens, tgt);

    // Save and load: the same files, names, numbers and outputs.
    let src_vocab = TokenVocab::from_tokens(&["a", "b", "c", "d", "e", "f"]).unwrap();
    let tgt_vocab = src_vocab.clone();
    let dir = TmpDir::new("s2s");
    let training = serde_json::json!({"epochs": epochs});
    save_dir(&dir.0, &model, &src_vocab, &tgt_vocab, Some(&training)).unwrap();
    let loaded = load_dir::<f32>(&dir.0).unwrap();
    assert_eq!(loaded.model.config(), model.config());
    assert_eq!(loaded.src_vocab, src_vocab);
    assert_eq!(loaded.tgt_vocab, tgt_vocab);
    assert_eq!(loaded.config_json["training"]["epochs"], epochs);
    assert_eq!(loaded.model.params(), model.params());
    assert_eq!(loaded.model.greedy(&src, 12).unwrap(), tgt);
    assert_eq!(
        loaded.model.loss(&batches[0]).unwrap(),
        model.loss(&batches[0]).unwrap()
    );
    let names: Vec<String> = model.state_dict().into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(
        names,
        [
            "src_embed.weight",
            "encoder.weight_ih_l0",
            "encoder.weight_hh_l0",
            "encoder.bias_ih_l0",
            "encoder.bias_hh_l0",
            "tgt_embed.weight",
            "decoder.weight_ih_l0",
            "decoder.weight_hh_l0",
            "decoder.bias_ih_l0",
            "decoder.bias_hh_l0",
            "attn.weight",
            "attn_combine.weight",
            "head.weight",
            "head.bias"
        ]
    );
    let file = TensorFile::read(dir.path("model.safetensors")).unwrap();
    assert_eq!(file.names().count(), names.len());
    assert_eq!(file.raw("attn_combine.weight").unwrap().shape, vec![48, 96]);
    assert_eq!(file.raw("head.weight").unwrap().shape, vec![10, 48]);
    // The same weights in f64.
    let wide = load_dir::<f64>(&dir.0).unwrap();
    let (a, b) = (
        wide.model.loss(&batches[0]).unwrap().0,
        model.loss(&batches[0]).unwrap().0,
    );
    assert!((a - b).abs() < 1e-3 * a.abs().max(1.0), "{a} vs {b}");
}

#[test]
fn loading_checks_the_configuration() {
    let dir = TmpDir::new("s2s-mismatch");
    let cfg = Seq2SeqConfig::new(Mode::Lstm, 6, 7)
        .embed_size(4)
        .hidden_size(5)
        .attention(Attention::Dot);
    let model: Seq2Seq<f32> = Seq2Seq::new(cfg.clone(), 0).unwrap();
    let path = dir.path("m.safetensors");
    model.save_weights(&path).unwrap();
    assert!(Seq2Seq::<f32>::load_weights(&path, &cfg).is_ok());
    for (bad, needle) in [
        (cfg.clone().hidden_size(6), "do not fit"),
        (cfg.clone().embed_size(3), "do not fit"),
        (cfg.clone().num_layers(2), "do not fit"),
        (
            cfg.clone().attention(Attention::General),
            "no tensor 'attn.weight'",
        ),
        (
            cfg.clone().attention(Attention::None),
            "unexpected tensor 'attn_combine.weight'",
        ),
        (
            Seq2SeqConfig {
                mode: Mode::Gru,
                ..cfg.clone()
            },
            "do not fit",
        ),
    ] {
        let e = Seq2Seq::<f32>::load_weights(&path, &bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{e}");
    }
    // Vocabularies must fit the model.
    let small = TokenVocab::from_tokens(&["a"]).unwrap();
    let e = save_dir(&dir.0, &model, &small, &small, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("source vocabulary has 5 ids but the model 6"),
        "{e}"
    );
    let e = load_dir::<f32>(dir.path("nope")).unwrap_err().to_string();
    assert!(e.contains("no such model directory"), "{e}");
    // Bad configurations.
    assert!(Seq2SeqConfig::new(Mode::Gru, 5, 3).validate().is_err()); // <eos> = 3 not < 3
    assert!(Seq2SeqConfig::new(Mode::Gru, 5, 6)
        .special_ids(4, 4)
        .validate()
        .is_err());
    let json = cfg.to_json();
    assert_eq!(Seq2SeqConfig::from_json(&json, "c.json").unwrap(), cfg);
    let bi = cfg.clone().bidirectional(true).hidden_size(6);
    assert_eq!(
        Seq2SeqConfig::from_json(&bi.to_json(), "c.json").unwrap(),
        bi
    );
    let e = cfg
        .clone()
        .bidirectional(true)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("even hidden_size"), "{e}");
    // Weights of a unidirectional encoder do not load as a bidirectional one.
    let e = Seq2Seq::<f32>::load_weights(&path, &cfg.clone().bidirectional(true).hidden_size(6))
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not fit"), "{e}");
    let mut wrong = json.clone();
    wrong["attention"] = "luong".into();
    let e = Seq2SeqConfig::from_json(&wrong, "c.json")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("c.json: unknown attention 'luong'"), "{e}");
    // Ids out of range are errors, not panics.
    let b = model.batch(&[vec![6]], &[vec![1]]).unwrap();
    let e = model.logits(&b).unwrap_err().to_string();
    assert!(
        e.contains("out of range for a source vocabulary of 6"),
        "{e}"
    );
    let b = model.batch(&[vec![5]], &[vec![7]]).unwrap();
    let e = model.logits(&b).unwrap_err().to_string();
    assert!(
        e.contains("out of range for a target vocabulary of 7"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics

#[test]
fn levenshtein_against_a_brute_force_definition() {
    // The recursive definition, memo-free, on short random strings.
    fn slow(a: &[u8], b: &[u8]) -> usize {
        match (a.split_first(), b.split_first()) {
            (None, _) => b.len(),
            (_, None) => a.len(),
            (Some((x, ra)), Some((y, rb))) => {
                let sub = slow(ra, rb) + usize::from(x != y);
                sub.min(slow(ra, b) + 1).min(slow(a, rb) + 1)
            }
        }
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    for _ in 0..300 {
        let a: Vec<u8> = (0..rng.gen_range(0..7))
            .map(|_| rng.gen_range(0..3))
            .collect();
        let b: Vec<u8> = (0..rng.gen_range(0..7))
            .map(|_| rng.gen_range(0..3))
            .collect();
        assert_eq!(levenshtein(&a, &b), slow(&a, &b), "{a:?} {b:?}");
    }
    assert_eq!(levenshtein(b"flaw", b"lawn"), 2);
    assert_eq!(levenshtein(b"abc", b"abc"), 0);
}

#[test]
fn error_counts_with_alternative_references() {
    let mut m = ErrorCounts::default();
    m.add(&["K", "AE1", "T"], &[vec!["K", "AE1", "T"]]);
    // Closest reference: 1 substitution against 3 tokens.
    m.add(
        &["T", "AH0", "M"],
        &[
            vec!["T", "AH0", "M", "EY1", "T", "OW2"],
            vec!["T", "AH0", "N"],
        ],
    );
    // Right if it equals any reference.
    m.add(&["AH0"], &[vec!["EY1"], vec!["AH0"]]);
    assert_eq!(m.sequences, 3);
    assert_eq!(m.exact, 2);
    assert_eq!((m.edits, m.ref_tokens), (1, 7));
    assert!((m.word_error_rate() - 1.0 / 3.0).abs() < 1e-15);
    assert!((m.token_error_rate() - 1.0 / 7.0).abs() < 1e-15);
    let mut all = ErrorCounts::default();
    all.merge(&m);
    all.merge(&m);
    assert_eq!(all.exact_match(), m.exact_match());
    assert_eq!(ErrorCounts::default().exact_match(), 0.0);
}
