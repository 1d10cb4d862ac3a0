//! The regularizer options of the training tasks: `--layer-norm`, `--input-dropout`,
//! `--recurrent-dropout`, `--zoneout`, `--weight-drop`, `--locked-dropout`,
//! `--embed-dropout`, `--ar`, `--tar` (see `recur::core::regular` for the equations).

use clap::{ArgAction, Args as ClapArgs};
use recur::models::lm::LmRegularizers;

/// Regularizers of the recurrent layers and of the models, shared by every `recur train` task:
/// all off by default, but layer norm in `recur train lm`.
#[derive(ClapArgs, Clone, Debug)]
pub struct RegularArgs {
    /// Layer normalization inside every recurrent cell (input and recurrent pre-activations,
    /// and the LSTM cell state); `--layer-norm` alone means true.
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub layer_norm: bool,
    /// Variational dropout on each recurrent layer's input: one mask per sequence.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub input_dropout: f64,
    /// Variational dropout on h_{t-1} in the recurrent product: one mask per sequence.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub recurrent_dropout: f64,
    /// Zoneout on h (and on c for an LSTM): each unit keeps its previous value with this
    /// probability in training; the expectation in evaluation.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub zoneout: f64,
    /// DropConnect on the recurrent weights (AWD-LSTM's weight drop): one mask per batch.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub weight_drop: f64,
    /// --dropout with one mask per sequence for all steps (locked dropout).
    #[arg(long)]
    pub locked_dropout: bool,
    /// Embedding dropout: whole tokens dropped from the embedding, one mask per batch.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub embed_dropout: f64,
    /// Activation regularization: adds AR · mean(y²) of the last layer's output to the loss.
    #[arg(long, default_value_t = 0.0, value_name = "AR")]
    pub ar: f64,
    /// Temporal activation regularization: adds TAR · mean((h_t - h_{t-1})²) to the loss.
    #[arg(long, default_value_t = 0.0, value_name = "TAR")]
    pub tar: f64,
}

impl RegularArgs {
    /// The language model's regularizers; an error names the option that is out of range.
    pub fn lm(&self) -> Result<LmRegularizers, String> {
        for (name, p) in [
            ("--input-dropout", self.input_dropout),
            ("--recurrent-dropout", self.recurrent_dropout),
            ("--zoneout", self.zoneout),
            ("--weight-drop", self.weight_drop),
            ("--embed-dropout", self.embed_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{name} must be in [0, 1), got {p}"));
            }
        }
        for (name, v) in [("--ar", self.ar), ("--tar", self.tar)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} must be a number >= 0, got {v}"));
            }
        }
        Ok(LmRegularizers {
            layer_norm: self.layer_norm,
            input_dropout: self.input_dropout,
            recurrent_dropout: self.recurrent_dropout,
            zoneout: self.zoneout,
            weight_drop: self.weight_drop,
            locked_dropout: self.locked_dropout,
            embed_dropout: self.embed_dropout,
            ar: self.ar,
            tar: self.tar,
        })
    }

    /// The regularizers of a sequence model of `recur train TASK` ([`RegularArgs::lm`]'s
    /// checks too): `embeds` is false for a model of numeric features (no embedding to drop
    /// from), `bidirectional` for a stack that reads both ways (the regularizers inside the
    /// layers are for one direction). An error names the option and what to do.
    pub fn seq(
        &self,
        task: &str,
        embeds: bool,
        bidirectional: bool,
    ) -> Result<LmRegularizers, String> {
        let r = self.lm()?;
        if r.embed_dropout > 0.0 && !embeds {
            return Err(format!(
                "--embed-dropout: this model of recur train {task} reads numeric features, it has no embedding to drop from"
            ));
        }
        if bidirectional {
            let inside: Vec<&str> = [
                ("--layer-norm", r.layer_norm),
                ("--input-dropout", r.input_dropout > 0.0),
                ("--recurrent-dropout", r.recurrent_dropout > 0.0),
                ("--zoneout", r.zoneout > 0.0),
                ("--weight-drop", r.weight_drop > 0.0),
                ("--locked-dropout", r.locked_dropout),
            ]
            .into_iter()
            .filter_map(|(n, on)| on.then_some(n))
            .collect();
            if !inside.is_empty() {
                return Err(format!(
                    "{} run inside unidirectional layers only: add --bidirectional=false to recur train {task} (--embed-dropout, --ar and --tar work both ways)",
                    inside.join(", ")
                ));
            }
        }
        Ok(r)
    }
}

/// A short description of the regularizers that are on (empty when none).
pub fn describe(r: &LmRegularizers) -> String {
    let mut parts = Vec::new();
    if r.layer_norm {
        parts.push("layer norm".to_string());
    }
    for (name, p) in [
        ("input dropout", r.input_dropout),
        ("recurrent dropout", r.recurrent_dropout),
        ("zoneout", r.zoneout),
        ("weight drop", r.weight_drop),
        ("embedding dropout", r.embed_dropout),
        ("AR", r.ar),
        ("TAR", r.tar),
    ] {
        if p != 0.0 {
            parts.push(format!("{name} {p}"));
        }
    }
    if r.locked_dropout {
        parts.push("locked dropout".into());
    }
    parts.join(", ")
}
