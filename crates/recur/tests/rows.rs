//! Training on shares of a batch (data parallelism): the gradients of the shares, weighted
//! by their targets, sum to those of the whole batch, dropout included (masks drawn row by
//! row); the whole batch without dropout is the plain training step, bit for bit.

use recur::data::text::Batches;
use recur::models::lm::{CharLm, CharLmConfig};
use recur::models::seqmodel::{SeqBatch, SeqModel, SeqModelConfig, Targets};
use recur::Mode;

/// The largest difference relative to the largest magnitude.
fn rel(a: &[f32], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-30);
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y).abs() / scale)
        .fold(0.0, f64::max)
}

fn ids(n: usize, vocab: usize, seed: u64) -> Vec<usize> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as usize % vocab
        })
        .collect()
}

/// The announcing step calls back with the head (2) before the recurrent stack's backward
/// pass has written anything, then the stack (1) before the embedding's, then 0; each
/// buffer is final when announced, and the gradients are those of the plain call.
#[test]
fn lm_rows_announce_the_head_then_the_rnn_then_the_embedding() {
    let cfg = CharLmConfig::new(Mode::Gru, 13)
        .embed_size(5)
        .hidden_size(8)
        .num_layers(2)
        .dropout(0.25);
    let model: CharLm<f32> = CharLm::new(cfg, 4).unwrap();
    let text = ids(300, 13, 5);
    let batches = Batches::new(&text, 6, 7).unwrap();
    let chunk = batches.chunk(2);
    let mut plain = model.zeros_like_grads();
    let (lp, sp) = model
        .loss_and_grad_rows(&chunk, 1..5, None, Some(8), &mut plain)
        .unwrap();
    let mut g = model.zeros_like_grads();
    let mut seen = Vec::new();
    let (la, sa) = model
        .loss_and_grad_rows_announcing(&chunk, 1..5, None, Some(8), &mut g, &mut |k, g| {
            let zero = |v: &[f32]| v.iter().all(|&x| x == 0.0);
            // The parts announced are final; the others are not computed yet.
            let bufs = [
                (&g.embed, &plain.embed),
                (&g.rnn, &plain.rnn),
                (&g.head, &plain.head),
            ];
            for (i, (now, fin)) in bufs.into_iter().enumerate() {
                if i >= k {
                    assert_eq!(now, fin, "part {i} at the call for {k}");
                } else {
                    assert!(zero(now), "part {i} written before the call for {k}");
                }
            }
            seen.push(k);
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, [2, 1, 0]);
    assert_eq!((la, sa), (lp, sp));
    assert_eq!(
        (g.embed, g.rnn, g.head),
        (plain.embed, plain.rnn, plain.head)
    );
    // An error of the callback ends the step.
    let mut g = model.zeros_like_grads();
    let e = model
        .loss_and_grad_rows_announcing(&chunk, 0..6, None, None, &mut g, &mut |k, _| {
            if k == 1 {
                Err(recur::Error::Input("stop here".into()))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert!(e.to_string().contains("stop here"), "{e}");
    assert!(g.embed.iter().all(|&x| x == 0.0));
}

#[test]
fn lm_shares_sum_to_the_whole_batch() {
    let cfg = CharLmConfig::new(Mode::Lstm, 11)
        .embed_size(6)
        .hidden_size(10)
        .num_layers(2)
        .dropout(0.3);
    let model: CharLm<f32> = CharLm::new(cfg, 3).unwrap();
    let text = ids(400, 11, 9);
    let batches = Batches::new(&text, 7, 9).unwrap();
    let chunk = batches.chunk(1);
    let mut whole = model.zeros_like_grads();
    let (loss, _) = model
        .loss_and_grad_rows(&chunk, 0..7, None, Some(42), &mut whole)
        .unwrap();
    for split in [vec![0..3, 3..7], vec![0..2, 2..4, 4..7], vec![0..1, 1..7]] {
        let mut sum = [
            vec![0.0f64; whole.embed.len()],
            vec![0.0; whole.rnn.len()],
            vec![0.0; whole.head.len()],
        ];
        let mut l = 0.0;
        for rows in split {
            let w = rows.len() as f64 / 7.0;
            let mut g = model.zeros_like_grads();
            let (ls, _) = model
                .loss_and_grad_rows(&chunk, rows, None, Some(42), &mut g)
                .unwrap();
            l += w * ls;
            for (s, part) in sum.iter_mut().zip([&g.embed, &g.rnn, &g.head]) {
                for (a, &b) in s.iter_mut().zip(part.iter()) {
                    *a += w * b as f64;
                }
            }
        }
        assert!((l - loss).abs() < 1e-6 * loss.abs(), "{l} {loss}");
        for (a, b) in [&whole.embed, &whole.rnn, &whole.head]
            .into_iter()
            .zip(&sum)
        {
            assert!(rel(a, b) < 1e-5, "{}", rel(a, b));
        }
    }
    // Another key gives other masks (the dropout is there).
    let mut other = model.zeros_like_grads();
    model
        .loss_and_grad_rows(&chunk, 0..7, None, Some(43), &mut other)
        .unwrap();
    assert_ne!(other.rnn, whole.rnn);
    // Without dropout, the whole batch is the plain step, bit for bit.
    let plain: CharLm<f32> = CharLm::new(model.config().clone().dropout(0.0), 3).unwrap();
    let (mut a, mut b) = (plain.zeros_like_grads(), plain.zeros_like_grads());
    let (la, sa) = plain.loss_and_grad(&chunk, None, None, &mut a).unwrap();
    let (lb, sb) = plain
        .loss_and_grad_rows(&chunk, 0..7, None, None, &mut b)
        .unwrap();
    assert_eq!(
        (la, a.rnn, a.head, a.embed, sa),
        (lb, b.rnn, b.head, b.embed, sb)
    );
}

#[test]
fn tagger_shares_sum_to_the_whole_batch() {
    let cfg = SeqModelConfig::tagger(9, 4)
        .hidden_size(8)
        .num_layers(2)
        .bidirectional(true)
        .embed_size(5)
        .dropout(0.4);
    let model: SeqModel<f32> = SeqModel::new(cfg, 1).unwrap();
    let lengths = [5usize, 2, 7, 3, 6, 1];
    let seqs: Vec<Vec<usize>> = lengths
        .iter()
        .enumerate()
        .map(|(k, &n)| ids(n, 9, k as u64 + 1))
        .collect();
    let tags: Vec<Vec<usize>> = seqs
        .iter()
        .map(|s| s.iter().map(|x| x % 4).collect())
        .collect();
    let batch_of = |r: std::ops::Range<usize>| {
        let b = SeqBatch::<f32>::from_tokens(&seqs[r.clone()]).unwrap();
        let t = Targets::step_classes(&tags[r], b.steps());
        (b, t)
    };
    let (b, t) = batch_of(0..6);
    let mut whole = model.zeros_like_grads();
    let lw = model
        .loss_and_grad_rows(&b, &t, 0, Some(5), &mut whole)
        .unwrap();
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
                    *a += w * x as f64;
                }
            }
        }
        assert!(
            (l - lw.loss).abs() < 1e-6 * lw.loss.abs(),
            "{l} {}",
            lw.loss
        );
        for (a, b) in [&whole.embed, &whole.rnn, &whole.head]
            .into_iter()
            .zip(&sum)
        {
            assert!(rel(a, b) < 1e-5, "{}", rel(a, b));
        }
    }
}

/// The sequence model's announcing step: the head (2) before the recurrent stack's backward
/// pass has written anything, then the stack (1) before the embedding's, then 0, each with
/// the loss's count; the gradients are those of the plain call.
#[test]
fn tagger_rows_announce_the_head_then_the_rnn_then_the_embedding() {
    let cfg = SeqModelConfig::tagger(9, 4)
        .hidden_size(6)
        .num_layers(2)
        .bidirectional(true)
        .embed_size(5)
        .dropout(0.3);
    let model: SeqModel<f32> = SeqModel::new(cfg, 2).unwrap();
    let seqs: Vec<Vec<usize>> = [4usize, 6, 1, 5]
        .iter()
        .enumerate()
        .map(|(k, &n)| ids(n, 9, k as u64 + 3))
        .collect();
    let tags: Vec<Vec<usize>> = seqs
        .iter()
        .map(|s| s.iter().map(|x| x % 4).collect())
        .collect();
    let b = SeqBatch::<f32>::from_tokens(&seqs).unwrap();
    let t = Targets::step_classes(&tags, b.steps());
    let mut plain = model.zeros_like_grads();
    let lp = model
        .loss_and_grad_rows(&b, &t, 2, Some(6), &mut plain)
        .unwrap();
    let mut g = model.zeros_like_grads();
    let mut seen = Vec::new();
    let la = model
        .loss_and_grad_rows_announcing(&b, &t, 2, Some(6), &mut g, &mut |k, count, g| {
            let bufs = [
                (&g.embed, &plain.embed),
                (&g.rnn, &plain.rnn),
                (&g.head, &plain.head),
            ];
            for (i, (now, fin)) in bufs.into_iter().enumerate() {
                if i >= k {
                    assert_eq!(now, fin, "part {i} at the call for {k}");
                } else {
                    assert!(
                        now.iter().all(|&x| x == 0.0),
                        "part {i} written before the call for {k}"
                    );
                }
            }
            seen.push((k, count));
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, [(2, 16), (1, 16), (0, 16)]);
    assert_eq!(la, lp);
    assert_eq!(
        (g.embed, g.rnn, g.head),
        (plain.embed, plain.rnn, plain.head)
    );
}
