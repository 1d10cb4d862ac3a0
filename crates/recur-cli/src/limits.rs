//! The largest values the command line accepts for sizes and lengths, checked before any data
//! is read or any memory is taken, so that a mistyped `--hidden-size 100000` is a one-line
//! error instead of an allocation failure that aborts the process (or a run that never ends).
//! The checks of the model options every task shares are here too ([`check_model`]).

use crate::model_opts::ModelOpts;

/// Parameters of a model, at most: 2^30 (4 GiB of f32 weights; training holds about four
/// times that with the gradients and Adam's moments).
pub const MAX_PARAMS: u128 = 1 << 30;
/// Tokens `recur sample --length` generates at most (they stream out as they are drawn).
pub const MAX_GENERATE: usize = 100_000_000;
/// Characters or words generated per input line by `recur predict` for a language model.
pub const MAX_PREDICT_LEN: usize = 1_000_000;
/// Tokens of one decoded output of a sequence-to-sequence model (`--max-len`).
pub const MAX_DECODE_LEN: usize = 10_000;
/// Hypotheses of a beam search (`--beam`).
pub const MAX_BEAM: usize = 1_000;

/// `value` of option `name` is at least 1 and at most `max`.
pub fn in_range(name: &str, value: usize, max: usize) -> Result<(), String> {
    if value == 0 {
        Err(format!("{name} must be at least 1"))
    } else if value > max {
        Err(format!("{name} {value}: at most {max} is allowed"))
    } else {
        Ok(())
    }
}

/// Checks the options of the model shared by every task ([`ModelOpts`]): the sizes are at
/// least 1, the dropout in [0, 1); `more` are the task's own sizes (`("--batch-size", 32)`),
/// checked the same way. The cell was checked by the parser.
pub fn check_model(m: &ModelOpts, more: &[(&str, usize)]) -> Result<(), String> {
    let mut sizes = vec![
        ("--hidden-size", m.hidden_size),
        ("--num-layers", m.num_layers),
    ];
    if let Some(e) = m.embed_size {
        sizes.push(("--embed-size", e));
    }
    for (name, v) in sizes.into_iter().chain(more.iter().copied()) {
        if v == 0 {
            return Err(format!("{name} must be at least 1"));
        }
    }
    if !(0.0..1.0).contains(&m.dropout) {
        return Err(format!("--dropout must be in [0, 1), got {}", m.dropout));
    }
    Ok(())
}

/// The parameters of a recurrent stack (PyTorch's layout, both biases): `gates` blocks of
/// `hidden` rows per layer and direction, reading `input` values in the first layer and
/// `dirs * hidden` in the others. Saturates at `u128::MAX` instead of overflowing.
pub fn rnn_params(gates: u128, input: usize, hidden: usize, layers: usize, dirs: usize) -> u128 {
    let (i, h, l, d) = (input as u128, hidden as u128, layers as u128, dirs as u128);
    let per = |fan_in: u128| {
        gates
            .saturating_mul(h)
            .saturating_mul(fan_in.saturating_add(h).saturating_add(2))
    };
    d.saturating_mul(
        per(i).saturating_add(l.saturating_sub(1).saturating_mul(per(d.saturating_mul(h)))),
    )
}

/// The parameters of `Embedding(rows, embed)` (none when `embed` is 0) → the recurrent
/// stack (reading `embed` values, or `input` without an embedding) → `Linear(dirs * hidden,
/// out)`: the block of the language model and the sequence models.
#[allow(clippy::too_many_arguments)]
pub fn block_params(
    mode: recur::Mode,
    rows: usize,
    embed: usize,
    input: usize,
    hidden: usize,
    layers: usize,
    dirs: usize,
    out: usize,
) -> u128 {
    let e = (rows as u128).saturating_mul(embed as u128);
    let read = if embed > 0 { embed } else { input };
    let head_in = (dirs as u128).saturating_mul(hidden as u128);
    let head = head_in.saturating_add(1).saturating_mul(out as u128);
    e.saturating_add(rnn_params(gates(mode), read, hidden, layers, dirs))
        .saturating_add(head)
}

/// The number of gate blocks of a cell name (`lstm` 4, `gru` 3, the plain RNNs 1).
pub fn gates(mode: recur::Mode) -> u128 {
    match mode {
        recur::Mode::Lstm => 4,
        recur::Mode::Gru => 3,
        _ => 1,
    }
}

/// An error if a model of `params` parameters is more than [`MAX_PARAMS`]; `sizes` names the
/// options that make it so.
pub fn check_params(params: u128, sizes: &str) -> Result<(), String> {
    if params > MAX_PARAMS {
        let gb = params as f64 * 4.0 / 1e9;
        Err(format!(
            "{sizes}: the model would have {params} parameters ({gb:.1} GB as f32); at most {MAX_PARAMS} are allowed"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts of PyTorch's modules (`sum(p.numel() for p in m.parameters())`).
    #[test]
    fn rnn_params_match_pytorch_counts() {
        // nn.LSTM(10, 20): 4*20*(10+20) + 2*4*20 = 2400 + 160
        assert_eq!(rnn_params(4, 10, 20, 1, 1), 2560);
        // nn.GRU(10, 20, num_layers=2, bidirectional=True): layer 0: 2*(3*20*(10+20+2)) = 3840,
        // layer 1 reads 40: 2*(3*20*(40+20+2)) = 7440
        assert_eq!(rnn_params(3, 10, 20, 2, 2), 3840 + 7440);
        // nn.RNN(1, 1): 1 + 1 + 2
        assert_eq!(rnn_params(1, 1, 1, 1, 1), 4);
    }

    #[test]
    fn huge_sizes_are_errors_not_overflows() {
        let n = rnn_params(4, usize::MAX, usize::MAX, usize::MAX, 2);
        assert!(check_params(n, "--hidden-size").is_err());
        assert!(
            check_params(rnn_params(4, 100, 100_000, 1, 1), "--hidden-size 100000")
                .unwrap_err()
                .contains("at most 1073741824")
        );
        assert!(check_params(rnn_params(4, 64, 128, 2, 1), "x").is_ok());
        assert_eq!(
            in_range("--beam", 0, 10).unwrap_err(),
            "--beam must be at least 1"
        );
        assert_eq!(
            in_range("--beam", 11, 10).unwrap_err(),
            "--beam 11: at most 10 is allowed"
        );
    }
}
