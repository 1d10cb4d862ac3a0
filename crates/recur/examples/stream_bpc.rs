//! Bits per character of a character-level model (a `recur train lm` directory) on a text,
//! computed by streaming: the text is cut into `--streams` contiguous pieces that advance one
//! character per step through `Stream::with_precision`, with the embedding and the head in
//! f32. Run once per weight precision to see what f16, bf16 and int8 weights cost:
//!
//! ```sh
//! cargo run --release -p recur --example stream_bpc -- MODEL_DIR TEXT_FILE [STREAMS]
//! ```

use recur::{Precision, Stream};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: stream_bpc MODEL_DIR TEXT_FILE [STREAMS (default 16)]");
        std::process::exit(2);
    }
    let (lm, vocab) = recur::models::lm::load_dir::<f32>(&args[1])?;
    let text = std::fs::read_to_string(&args[2])?;
    let ids = vocab.encode(&text);
    let b: usize = args.get(3).map_or(Ok(16), |s| s.parse())?;
    let per = (ids.len().saturating_sub(1)) / b;
    if per == 0 {
        return Err("the text is too short for that many streams".into());
    }
    let (embed, head) = (lm.embed(), lm.head());
    let (e, v) = (lm.config().embed_size, head.out_features());
    println!("{} characters, {b} streams of {per} steps", ids.len());
    println!("| weights | bits per character | seconds |");
    println!("|---|---|---|");
    for precision in [
        Precision::F32,
        Precision::F16,
        Precision::Bf16,
        Precision::Int8,
    ] {
        let mut s = Stream::with_precision(lm.rnn(), b, precision)?;
        let (mut x, mut logits) = (vec![0.0f32; b * e], vec![0.0f32; b * v]);
        let mut nats = 0.0f64;
        let t0 = Instant::now();
        for t in 0..per {
            let now: Vec<usize> = (0..b).map(|k| ids[k * per + t]).collect();
            embed.forward(&now, &mut x)?;
            let h = s.step(&x)?;
            head.forward(h, b, &mut logits);
            for k in 0..b {
                let row = &logits[k * v..(k + 1) * v];
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &z| m.max(z)) as f64;
                let lse = max
                    + row
                        .iter()
                        .map(|&z| (z as f64 - max).exp())
                        .sum::<f64>()
                        .ln();
                nats += lse - row[ids[k * per + t + 1]] as f64;
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let bpc = nats / (b * per) as f64 / std::f64::consts::LN_2;
        println!("| {precision} | {bpc:.6} | {secs:.2} |");
    }
    Ok(())
}
