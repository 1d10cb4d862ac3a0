//! PyTorch weights in, then a stream that runs one step at a time.
//!
//! The weights are a whole `nn.Module`'s state_dict saved by PyTorch with
//! `safetensors.torch.save_file(model.state_dict(), path)`: a classifier whose GRU sits under
//! `rnn.` next to a linear `head.`. By default the example reads the copy committed with the
//! tests (made by `scripts/gen_fixtures.py`, with PyTorch's own outputs beside it); pass your
//! own file and prefix to run it on yours:
//!
//!     cargo run --release -p recur --example pytorch_weights
//!     cargo run --release -p recur --example pytorch_weights -- model.safetensors encoder.rnn
//!
//! It runs the whole batch forward, compares the output with PyTorch's, then feeds the same
//! inputs to a [`recur::Stream`] one step at a time (no allocation per step) and checks that
//! the stream ends in PyTorch's final state.

use recur::io::state_dict::{describe, load_rnn, LoadOptions, TensorFile};
use recur::{Rnn, Stream, Tensor};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fixtures =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/state_dict");
    let mut args = std::env::args().skip(1);
    let (weights, prefix) = match (args.next(), args.next()) {
        (Some(w), p) => (PathBuf::from(w), p),
        (None, _) => (
            fixtures.join("classifier_gru_bf.safetensors"),
            Some("rnn".into()),
        ),
    };
    let file = TensorFile::read(&weights)?;
    // The cell, layers, sizes and bias come from the tensor names and shapes.
    let rnn: Rnn<f32> = load_rnn(
        &file,
        &LoadOptions {
            prefix,
            batch_first: true,
            ..Default::default()
        },
    )?;
    println!("{}: {}", weights.display(), describe(rnn.config()));

    // Inputs: PyTorch's own (B=3, T=4, I=4) for the committed weights, else random ones.
    let io = fixtures.join("classifier_gru_bf.io.safetensors");
    let own = weights.ends_with("classifier_gru_bf.safetensors");
    let (x, expected) = if own {
        let io = TensorFile::read(&io)?;
        (
            io.float::<f32>("input")?,
            Some(io.float::<f32>("expected.h_n")?),
        )
    } else {
        let (b, t, i) = (2, 5, rnn.config().input_size);
        let data = (0..b * t * i)
            .map(|k| ((k * 7919) % 200) as f32 / 100.0 - 1.0)
            .collect();
        (Tensor::new(&[b, t, i], data)?, None)
    };
    let (b, t, i) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let out = rnn.forward(&x, None, None)?;
    println!(
        "forward: output {:?}, h_n {:?}",
        out.output.shape(),
        out.h_n.shape()
    );

    // The same sequences through a stream, one step for the whole batch at a time.
    let mut stream = Stream::new(&rnn, b)?;
    let mut step_input = vec![0.0f32; b * i];
    for step in 0..t {
        for s in 0..b {
            step_input[s * i..(s + 1) * i].copy_from_slice(&x.data()[(s * t + step) * i..][..i]);
        }
        let h = stream.step(&step_input)?;
        if step + 1 == t {
            println!(
                "stream: after {t} steps, h of sequence 0 = {:?}",
                &h[..h.len() / b]
            );
        }
    }
    let last_layer = stream.state().h;
    let top = &last_layer.data()[last_layer.data().len() - b * rnn.config().hidden_size..];
    let worst = |a: &[f32], e: &[f32]| {
        a.iter()
            .zip(e)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max)
    };
    let n = out.h_n.data().len();
    println!(
        "stream vs forward, final state: max difference {:.2e}",
        worst(top, &out.h_n.data()[n - top.len()..])
    );
    if let Some(e) = expected {
        let d = worst(out.h_n.data(), e.data());
        println!("recur vs PyTorch, h_n: max difference {d:.2e}");
        if d > 1e-5 {
            return Err(format!("differs from PyTorch by {d}").into());
        }
    }
    Ok(())
}
