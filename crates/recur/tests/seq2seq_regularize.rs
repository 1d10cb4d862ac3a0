//! The encoder-decoder's regularizers: the gradient of the whole objective (cross-entropy +
//! AR + TAR, with embedding dropout on both sides, dropout and every regularizer inside the
//! layers of the encoder and the decoder) against finite differences in f64 with the masks
//! fixed by the generator's seed; AR and TAR against their definitions; decoding with layer
//! norm and zoneout follows teacher forcing; the configuration's JSON round trip
//! (a plain model's keys unchanged, old directories load).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::core::tolerance::{FD_STEP, FINITE_DIFF};
use recur::data::TokenVocab;
use recur::models::seq2seq::{
    load_dir, save_dir, Attention, BeamOptions, LmRegularizers, Seq2Seq, Seq2SeqConfig,
};
use recur::{Mode, Tensor};

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

fn random_seqs(lengths: &[usize], v: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    lengths
        .iter()
        .map(|&n| (0..n).map(|_| rng.gen_range(4..v)).collect())
        .collect()
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
    for (mode, attention) in [
        (Mode::Lstm, Attention::General),
        (Mode::Gru, Attention::None),
        (Mode::RnnTanh, Attention::Dot),
    ] {
        let mut cfg = Seq2SeqConfig::new(mode, 8, 7)
            .embed_size(3)
            .hidden_size(4)
            .num_layers(2)
            .dropout(0.25)
            .attention(attention);
        cfg.regular = all_on();
        let mut model: Seq2Seq<f64> = Seq2Seq::new(cfg, 3).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for p in model.params_mut() {
            for x in p.iter_mut() {
                *x = rng.gen_range(-0.8..0.8);
            }
        }
        let batch = model
            .batch(
                &random_seqs(&[3, 1, 4], 8, 2),
                &random_seqs(&[2, 3, 1], 7, 5),
            )
            .unwrap();
        let objective = |m: &Seq2Seq<f64>| {
            let mut g = m.zeros_like_grads();
            let mut r = ChaCha8Rng::seed_from_u64(99);
            let l = m.loss_terms_and_grad(&batch, Some(&mut r), &mut g).unwrap();
            (l.cross_entropy + l.ar + l.tar, g, l)
        };
        let (_, g, terms) = objective(&model);
        assert!(terms.ar > 0.0 && terms.tar > 0.0, "{terms:?}");
        let analytic: Vec<Vec<f64>> = [
            &g.src_embed,
            &g.encoder,
            &g.tgt_embed,
            &g.decoder,
            &g.attn,
            &g.attn_combine,
            &g.head,
        ]
        .iter()
        .map(|v| v.to_vec())
        .collect();
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
                    "{mode} {attention} part {part} [{k}]: backward {a:e}, finite differences {num:e}"
                );
                if a != 0.0 {
                    nonzero += 1;
                }
            }
        }
        assert!(nonzero > 100, "{mode}: {nonzero}");
    }
}

#[test]
fn ar_and_tar_are_their_definitions() {
    let mut cfg = Seq2SeqConfig::new(Mode::Lstm, 8, 7)
        .embed_size(3)
        .hidden_size(5)
        .attention(Attention::None);
    cfg.regular.ar = 0.7;
    cfg.regular.tar = 0.3;
    let model: Seq2Seq<f64> = Seq2Seq::new(cfg, 2).unwrap();
    let src = random_seqs(&[3, 2], 8, 1);
    let tgt = random_seqs(&[3, 1], 7, 2);
    let batch = model.batch(&src, &tgt).unwrap();
    let mut g = model.zeros_like_grads();
    // No dropout: the decoder's outputs are the evaluation pass's.
    let l = model.loss_terms_and_grad(&batch, None, &mut g).unwrap();
    let (mut sq, mut n, mut dsq, mut m) = (0.0, 0, 0.0, 0);
    for (s, t) in src.iter().zip(&tgt) {
        let mut x = vec![0.0; s.len() * 3];
        // Encoder, then the decoder over <bos> t from its final state.
        model.modules().src_embed.forward(s, &mut x).unwrap();
        let enc = model
            .encoder()
            .forward(&Tensor::new(&[s.len(), 1, 3], x).unwrap(), None, None)
            .unwrap();
        let mut dec_in = vec![TokenVocab::BOS];
        dec_in.extend_from_slice(t);
        let mut y = vec![0.0; dec_in.len() * 3];
        model.modules().tgt_embed.forward(&dec_in, &mut y).unwrap();
        let out = model
            .decoder()
            .forward(
                &Tensor::new(&[dec_in.len(), 1, 3], y).unwrap(),
                Some(&enc.state()),
                None,
            )
            .unwrap()
            .output
            .into_data();
        sq += out.iter().map(|v| v * v).sum::<f64>();
        n += out.len();
        for k in 5..out.len() {
            dsq += (out[k] - out[k - 5]).powi(2);
            m += 1;
        }
    }
    let (ar, tar) = (0.7 * sq / n as f64, 0.3 * dsq / m as f64);
    assert!((l.ar - ar).abs() < 1e-12 * ar, "{} {ar}", l.ar);
    assert!((l.tar - tar).abs() < 1e-12 * tar, "{} {tar}", l.tar);
    let (total, count) = model.loss(&batch).unwrap();
    assert!((l.cross_entropy - total / count as f64).abs() < 1e-12);
}

#[test]
fn decoding_with_layer_norm_and_zoneout_follows_teacher_forcing() {
    let mut cfg = Seq2SeqConfig::new(Mode::Lstm, 9, 7)
        .embed_size(6)
        .hidden_size(10)
        .num_layers(2);
    cfg.regular.layer_norm = true;
    cfg.regular.zoneout = 0.2;
    let model: Seq2Seq<f64> = Seq2Seq::new(cfg, 4).unwrap();
    let src = random_seqs(&[4, 1, 6, 3], 9, 3);
    // Greedy decoding (the decoder streamed step by step, in evaluation) picks at every
    // step the argmax of the teacher-forced logits of its own output.
    let greedy = model.greedy(&src, 6).unwrap();
    let v = 7;
    let mut checked = 0;
    for (i, g) in greedy.iter().enumerate() {
        let b = model.batch(&[&src[i]], &[g]).unwrap();
        let logits = model.logits(&b).unwrap();
        for (t, &id) in g.iter().enumerate() {
            let row = &logits[t * v..(t + 1) * v];
            let best = (0..v).fold(0, |m, k| if row[k] > row[m] { k } else { m });
            assert_eq!(best, id, "source {i} step {t}");
            checked += 1;
        }
    }
    assert!(checked > 5, "{checked}");
    // And beam search scores its hypotheses as teacher forcing does.
    let hyps = model
        .beam_search(
            &src,
            &BeamOptions {
                beam_size: 3,
                max_len: 6,
                length_penalty: 0.0,
            },
        )
        .unwrap();
    for (i, h) in hyps.iter().enumerate().filter(|(_, h)| h.finished) {
        let b = model.batch(&[&src[i]], &[&h.tokens]).unwrap();
        let ll = model.log_likelihood(&b).unwrap()[0];
        assert!((h.log_prob - ll).abs() < 1e-9, "{} {ll}", h.log_prob);
    }
}

#[test]
fn config_json_round_trip_and_old_directories() {
    let dir = TmpDir::new("s2s-reg");
    let plain = Seq2SeqConfig::new(Mode::Gru, 8, 7)
        .embed_size(3)
        .hidden_size(4);
    let j = plain.to_json();
    for k in ["layer_norm", "zoneout", "embed_dropout", "ar", "tar"] {
        assert!(j.get(k).is_none(), "a plain model writes no {k}");
    }
    let mut cfg = plain.clone().num_layers(2).dropout(0.1);
    cfg.regular = all_on();
    let j = cfg.to_json();
    assert_eq!(j["layer_norm"], true);
    assert_eq!(j["weight_drop"].as_f64(), Some(0.3));
    assert_eq!(Seq2SeqConfig::from_json(&j, "c").unwrap(), cfg);
    let model: Seq2Seq<f32> = Seq2Seq::new(cfg.clone(), 1).unwrap();
    let vocab = |n: usize| {
        let names: Vec<String> = (4..n).map(|k| format!("w{k}")).collect();
        TokenVocab::from_tokens(&names).unwrap()
    };
    save_dir(&dir.0, &model, &vocab(8), &vocab(7), None).unwrap();
    let back = load_dir::<f32>(&dir.0).unwrap().model;
    assert_eq!(back.config(), &cfg);
    let names: Vec<String> = back.state_dict().into_iter().map(|(n, _, _)| n).collect();
    assert!(
        names.contains(&"encoder.ln_ih_weight_l0".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"decoder.ln_hh_bias_l1".to_string()),
        "{names:?}"
    );
    // A bidirectional encoder takes embedding dropout and AR/TAR, not the layers' options.
    let mut bi = plain.clone().bidirectional(true);
    bi.regular.layer_norm = true;
    let e = bi.validate().unwrap_err().to_string();
    assert!(e.contains("unidirectional"), "{e}");
    bi.regular = LmRegularizers {
        embed_dropout: 0.1,
        ar: 1.0,
        tar: 1.0,
        ..LmRegularizers::default()
    };
    bi.validate().unwrap();
}
