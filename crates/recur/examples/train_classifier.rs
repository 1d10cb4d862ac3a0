//! A sequence classifier trained from the library alone: token ids → `nn.Embedding` →
//! `nn.LSTM` → the final hidden state → `nn.Linear` → cross-entropy, with Adam and gradient
//! clipping, on generated data (no files).
//!
//!     cargo run --release -p recur --example train_classifier
//!
//! The task: sequences of 3 to 12 filler tokens (ids 6..10) in which two marker tokens A
//! (id 4) and B (id 5) are placed; the class is whether A comes before B. A bag of words
//! cannot solve it: the order matters. After training it prints the accuracy on held-out
//! sequences (chance is about 50%) and saves the model with `recur::models::seqmodel::save_dir`
//! (weights with PyTorch names, config.json).

use rand::{Rng, SeedableRng};
use recur::models::seqmodel::{save_dir, SeqBatch, SeqModel, SeqModelConfig, Targets};
use recur::nn::{Adam, AdamConfig};
use recur::Mode;

/// `n` sequences and their classes.
fn data(n: usize, rng: &mut impl Rng) -> (Vec<Vec<usize>>, Vec<usize>) {
    let mut seqs = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let len = rng.gen_range(3..=12);
        // Ids 0..4 are kept for the padding and special tokens of recur's vocabularies.
        let mut s: Vec<usize> = (0..len).map(|_| rng.gen_range(6..10)).collect();
        let a = rng.gen_range(0..len);
        let b = (a + rng.gen_range(1..len)) % len;
        s[a] = 4;
        s[b] = 5;
        labels.push(usize::from(a < b));
        seqs.push(s);
    }
    (seqs, labels)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let (train_x, train_y) = data(2000, &mut rng);
    let (test_x, test_y) = data(500, &mut rng);
    let config = SeqModelConfig::text_classifier(10, 2)
        .embed_size(16)
        .mode(Mode::Lstm)
        .hidden_size(32);
    let mut model: SeqModel<f32> = SeqModel::new(config, 0)?;
    let mut grads = model.zeros_like_grads();
    let n: usize = grads.embed.len() + grads.rnn.len() + grads.head.len();
    let mut adam: Adam<f32> = Adam::new(
        n,
        AdamConfig {
            lr: 1e-2,
            ..Default::default()
        },
    );
    let accuracy = |model: &SeqModel<f32>| -> Result<f64, recur::Error> {
        let mut right = 0;
        for (xs, ys) in test_x.chunks(100).zip(test_y.chunks(100)) {
            let pred = model.classify(&SeqBatch::from_tokens(xs)?)?;
            right += pred.iter().zip(ys).filter(|(p, y)| p == y).count();
        }
        Ok(right as f64 / test_x.len() as f64)
    };
    println!(
        "before training: test accuracy {:.1}%",
        100.0 * accuracy(&model)?
    );
    let batch_size = 32;
    for epoch in 1..=6 {
        let mut loss_sum = 0.0;
        let mut batches = 0;
        for (xs, ys) in train_x.chunks(batch_size).zip(train_y.chunks(batch_size)) {
            let batch = SeqBatch::from_tokens(xs)?;
            grads.zero();
            let loss =
                model.loss_and_grad(&batch, &Targets::Classes(ys.to_vec()), None, &mut grads)?;
            grads.clip_norm(1.0);
            adam.step_parts(&mut model.parts(&grads));
            loss_sum += loss.loss;
            batches += 1;
        }
        println!(
            "epoch {epoch}: training loss {:.4}, test accuracy {:.1}%",
            loss_sum / batches as f64,
            100.0 * accuracy(&model)?
        );
    }
    let dir = std::env::temp_dir().join("recur-example-classifier");
    save_dir(&dir, &model, None)?;
    println!("model saved in {}", dir.display());
    Ok(())
}
