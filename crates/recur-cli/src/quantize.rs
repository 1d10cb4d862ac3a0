//! `recur quantize`: writes a copy of a model directory whose recurrent weights are stored
//! compactly, for inference (`recur predict`, `recur eval`, `recur sample` and the library
//! load it as they load any model directory).
//!
//! ```text
//! recur quantize --model DIR --precision int8|f16|bf16 --out DIR2
//! ```
//!
//! The recurrent weights (`rnn.weight_ih_l*`, `rnn.weight_hh_l*`, `rnn.weight_hr_l*`) are
//! written as F16 / BF16 tensors, or for int8 as I8 tensors with their per-row scales in
//! `NAME.scale` (F32, one per row); everything else (embeddings, head, biases, vocabularies)
//! stays as it was. config.json records `"precision"`. docs/precision.md has the details.

use crate::run::Failure;
use clap::Args as ClapArgs;
use recur::io::state_dict::{write_tensors, OutTensor};
use recur::models::{precision_of, read_config, ModelConfig, ModelKind, WEIGHTS_FILE};
use recur::Precision;
use recur_kernels::half::HalfKind;
use recur_kernels::quant::QuantMat;
use std::path::{Path, PathBuf};

/// Options of `recur quantize`.
#[derive(ClapArgs)]
pub struct Args {
    /// The model directory written by `recur train` (lm, classify, tag or forecast).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// How to store the recurrent weights: int8 (per-row scales, activations quantized at
    /// run time as PyTorch's quantize_dynamic), f16 or bf16.
    #[arg(long, value_name = "int8|f16|bf16")]
    precision: String,
    /// The new model directory (must not hold files yet).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Parses a `--precision` value of the weights.
pub fn parse_precision(flag: &str, v: &str) -> Result<Precision, String> {
    v.parse::<Precision>().map_err(|e| format!("{flag}: {e}"))
}

/// Applies `recur predict/eval/sample --precision` to a model directory's configuration: the
/// loader then stores the weights in that precision. A directory written by `recur quantize`
/// runs in its own precision only.
pub fn apply_precision(cfg: &mut ModelConfig, flag: Option<&str>) -> Result<(), String> {
    let Some(v) = flag else {
        return Ok(());
    };
    let want = parse_precision("--precision", v)?;
    if cfg.kind == ModelKind::Seq2seq && want != Precision::F32 {
        return Err(
            "--precision: reduced precision is for language models, classifiers, taggers and forecasters; seq2seq models run in f32".into(),
        );
    }
    let own = precision_of(cfg).map_err(|e| e.to_string())?;
    if own != Precision::F32 && own != want {
        return Err(format!(
            "--precision {want}: the model's weights are stored as {own} (written by recur quantize); use --precision {own}, or the f32 model directory"
        ));
    }
    cfg.json["precision"] = serde_json::Value::String(want.to_string());
    Ok(())
}

/// An error if `out` holds a model with compact weights: training needs f32 weights.
pub fn refuse_quantized_out(out: &Path) -> Result<(), String> {
    if !out.join(recur::models::CONFIG_FILE).is_file() {
        return Ok(());
    }
    let Ok(cfg) = read_config(out) else {
        return Ok(());
    };
    match precision_of(&cfg) {
        Ok(Precision::F32) | Err(_) => Ok(()),
        Ok(p) => Err(format!(
            "--out {}: it holds a model with {p} weights (written by recur quantize), which is for inference only; train into another directory (quantize the f32 model afterwards)",
            out.display()
        )),
    }
}

/// Whether a state_dict name is one of the recurrent weight matrices that get compact.
fn is_recurrent_weight(name: &str) -> bool {
    name.strip_prefix("rnn.").is_some_and(|r| {
        ["weight_ih_l", "weight_hh_l", "weight_hr_l"]
            .iter()
            .any(|p| r.starts_with(p))
    })
}

/// The tensors of a state_dict with the recurrent weights in `p` (they already hold the
/// values of `p`: [`recur::Rnn::set_precision`] was applied).
enum Stored {
    F32(Vec<f32>),
    Half(Vec<u16>, HalfKind),
    Int8(Vec<i8>),
}

fn write_weights(
    path: &Path,
    dict: &[(String, Vec<usize>, &[f32])],
    p: Precision,
) -> recur::Result<()> {
    let mut stored: Vec<(String, Vec<usize>, Stored)> = Vec::new();
    for (name, shape, v) in dict {
        if !is_recurrent_weight(name) || p == Precision::F32 {
            stored.push((name.clone(), shape.clone(), Stored::F32(v.to_vec())));
            continue;
        }
        match p {
            Precision::F16 | Precision::Bf16 => {
                let kind = if p == Precision::F16 {
                    HalfKind::F16
                } else {
                    HalfKind::Bf16
                };
                let bits = v.iter().map(|&x| kind.encode(x)).collect();
                stored.push((name.clone(), shape.clone(), Stored::Half(bits, kind)));
            }
            _ => {
                let (rows, cols) = (shape[0], shape[1]);
                let q = QuantMat::from_f32(v, rows, cols);
                stored.push((name.clone(), shape.clone(), Stored::Int8(q.values())));
                stored.push((
                    format!("{name}.scale"),
                    vec![rows],
                    Stored::F32(q.scales().to_vec()),
                ));
            }
        }
    }
    let out: Vec<(String, Vec<usize>, OutTensor<'_>)> = stored
        .iter()
        .map(|(n, s, v)| {
            let t = match v {
                Stored::F32(v) => OutTensor::F32(v),
                Stored::Half(b, HalfKind::F16) => OutTensor::F16(b),
                Stored::Half(b, HalfKind::Bf16) => OutTensor::Bf16(b),
                Stored::Int8(q) => OutTensor::I8(q),
            };
            (n.clone(), s.clone(), t)
        })
        .collect();
    write_tensors(path, &out, &[("precision", &p.to_string())])
}

pub fn run(a: Args) -> Result<(), Failure> {
    let p = parse_precision("--precision", &a.precision)?;
    if p == Precision::F32 {
        return Err(
            "--precision: give int8, f16 or bf16 (the model directory is already f32)"
                .to_string()
                .into(),
        );
    }
    let cfg = read_config(&a.model).map_err(|e| format!("--model {e}"))?;
    let own = precision_of(&cfg)?;
    if own != Precision::F32 {
        return Err(format!(
            "--model {}: its weights are already stored as {own}; quantize the f32 model",
            a.model.display()
        )
        .into());
    }
    if a.out.exists()
        && std::fs::read_dir(&a.out)
            .map_err(|e| format!("--out {}: {e}", a.out.display()))?
            .next()
            .is_some()
    {
        return Err(format!(
            "--out {}: the directory already holds files; give a new one",
            a.out.display()
        )
        .into());
    }
    let mut model_cfg = cfg.clone();
    model_cfg.json["precision"] = serde_json::Value::String(p.to_string());
    // Load the model in the new precision (this rounds and checks every weight).
    let weights = |dict: Vec<(String, Vec<usize>, &[f32])>| -> Vec<(String, Vec<usize>, Vec<f32>)> {
        dict.into_iter()
            .map(|(n, s, v)| (n, s, v.to_vec()))
            .collect()
    };
    let dict = match cfg.kind {
        ModelKind::CharLm => {
            let (m, _) = crate::task_lm::load_lm_from(&a.model, &model_cfg)
                .map_err(|e| format!("--model {}: {e}", a.model.display()))?;
            weights(m.state_dict())
        }
        ModelKind::SeqModel => {
            let m = crate::task_seq::load_model(&a.model, &model_cfg)
                .map_err(|e| format!("--model {}: {e}", a.model.display()))?;
            weights(m.state_dict())
        }
        ModelKind::Seq2seq => {
            return Err("--model: seq2seq models cannot be quantized yet (language models, classifiers, taggers and forecasters can)".to_string().into())
        }
    };
    std::fs::create_dir_all(&a.out).map_err(|e| format!("--out {}: {e}", a.out.display()))?;
    // Every other file of the directory (vocabularies, labels, normalization, metrics), but
    // not the training checkpoint: the new directory is for inference.
    for e in std::fs::read_dir(&a.model).map_err(|e| format!("--model: {e}"))? {
        let e = e.map_err(|e| format!("--model: {e}"))?;
        let name = e.file_name();
        let skip = [
            WEIGHTS_FILE,
            recur::models::CONFIG_FILE,
            recur::train::CHECKPOINT_FILE,
        ];
        if !e.path().is_file() || skip.iter().any(|s| name == *s) {
            continue;
        }
        std::fs::copy(e.path(), a.out.join(&name))
            .map_err(|err| format!("--out {}: {err}", a.out.join(&name).display()))?;
    }
    let dict: Vec<(String, Vec<usize>, &[f32])> = dict
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), v.as_slice()))
        .collect();
    write_weights(&a.out.join(WEIGHTS_FILE), &dict, p)?;
    recur::models::write_config(&a.out, model_cfg.json.clone())?;
    let bytes = |d: &Path| std::fs::metadata(d.join(WEIGHTS_FILE)).map_or(0, |m| m.len());
    println!(
        "wrote {} ({p} recurrent weights): {} bytes of weights, {} in f32",
        a.out.display(),
        bytes(&a.out),
        bytes(&a.model)
    );
    Ok(())
}
