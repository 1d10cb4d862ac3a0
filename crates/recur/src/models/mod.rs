//! The model directory every kind of model shares: one configuration file (`config.json`)
//! whose `"model"` field says the kind ([`ModelKind`], a serde-tagged enum) and whose
//! `"format"` field the version of the directory's layout ([`FORMAT_VERSION`]); the weights
//! in `model.safetensors`; the vocabulary and label files of each kind beside them.
//!
//! [`read_config`] is the one reader of `config.json`: `recur eval` and `recur predict` read
//! it once, dispatch on the [`ModelKind`], and hand the [`ModelConfig`] to the kind's loader
//! ([`crate::models::lm::load_from`], [`crate::models::seqmodel::load_from`], [`crate::models::seq2seq::load_from`]),
//! which does not read it again. Directories written before the `"format"` field existed are
//! format 0; their keys are those of format 1, so they load unchanged (a test keeps one of
//! each kind).
//!
//! Each kind's own keys are a serde-derived struct ([`crate::models::lm::CharLmConfig`], the
//! flat file form of [`crate::models::seqmodel::SeqModelConfig`],
//! [`crate::models::seq2seq::Seq2SeqConfig`]), written by [`config_json`] and read by
//! [`parse_config`]; a bad field is an error naming the file and the field. Keys a kind does
//! not know are ignored, not refused: `config.json` holds `"task"` and `"training"` beside
//! the model's keys, and the same objects are stored inside checkpoints.

pub mod exprnn;
pub mod grads;
pub mod lm;
pub mod rows;
pub mod seq2seq;
pub mod seqmodel;
pub mod synthetic;

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The configuration file of a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// The weights file of a model directory (safetensors, PyTorch names).
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The version of the directory layout this recur writes (`"format"` in `config.json`):
/// 1; 0 is a directory from before the field (same keys). A larger one comes from a newer
/// recur and is refused with a message that says so.
pub const FORMAT_VERSION: u64 = 1;

/// The kinds of model a directory can hold (`"model"` in `config.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// [`crate::models::lm::CharLm`]: a character- or word-level language model.
    CharLm,
    /// [`crate::models::seqmodel::SeqModel`]: a classifier, tagger or forecaster.
    SeqModel,
    /// [`crate::models::seq2seq::Seq2Seq`]: an encoder-decoder.
    Seq2seq,
}

impl ModelKind {
    /// Every kind, in the order of their names in messages.
    pub const ALL: [ModelKind; 3] = [ModelKind::CharLm, ModelKind::SeqModel, ModelKind::Seq2seq];

    /// What the kind is, in messages: "a character language model", ...
    pub fn describe(self) -> &'static str {
        match self {
            ModelKind::CharLm => "a character language model",
            ModelKind::SeqModel => "a sequence model",
            ModelKind::Seq2seq => "a sequence-to-sequence model",
        }
    }

    /// The name in `config.json`: `char_lm`, `seq_model`, `seq2seq`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::CharLm => "char_lm",
            ModelKind::SeqModel => "seq_model",
            ModelKind::Seq2seq => "seq2seq",
        }
    }
}

/// The typed header every `config.json` starts from.
#[derive(Debug, Deserialize)]
struct Header {
    model: ModelKind,
    #[serde(default)]
    format: u64,
}

/// A model directory's configuration, read once by [`read_config`].
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// The kind of model.
    pub kind: ModelKind,
    /// The directory format it was written in (0: before the field existed).
    pub format: u64,
    /// The whole `config.json`: the kind's own keys, `"task"` and `"training"` if written.
    pub json: serde_json::Value,
    /// The file's path, for messages.
    pub source: String,
}

/// Reads and checks `dir/config.json`: that `dir` is a model directory, the file is JSON,
/// names a known kind, and is of a format this recur reads.
pub fn read_config(dir: impl AsRef<Path>) -> Result<ModelConfig> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(Error::Io(format!(
            "{}: no such model directory",
            dir.display()
        )));
    }
    let path = dir.join(CONFIG_FILE);
    let source = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| Error::file(&path, "cannot read", e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::json(&source, e))?;
    let Some(name) = json.get("model") else {
        return Err(Error::Input(format!(
            "{source}: no \"model\" field: not a recur model directory"
        )));
    };
    let header: Header = serde_json::from_value(json.clone()).map_err(|_| {
        let known: Vec<&str> = ModelKind::ALL.iter().map(|k| k.name()).collect();
        match json.get("format").filter(|f| !f.is_u64()) {
            Some(f) => Error::Input(format!(
                "{source}: \"format\" is {f}, expected a whole number"
            )),
            None => Error::Input(format!(
                "{source}: this recur does not know models of kind {name} (it knows {})",
                known.join(", ")
            )),
        }
    })?;
    if header.format > FORMAT_VERSION {
        return Err(Error::Input(format!(
            "{source}: format {} was written by a newer recur; this one reads formats 0 to \
             {FORMAT_VERSION}. Use a recur as new as the one that trained the model, or train \
             it again with this one",
            header.format
        )));
    }
    Ok(ModelConfig {
        kind: header.model,
        format: header.format,
        json,
        source,
    })
}

impl ModelConfig {
    /// An error unless the directory holds a model of `kind`.
    pub fn expect(&self, kind: ModelKind) -> Result<()> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(Error::Input(format!(
                "{}: a {} model, not a {} one",
                self.source,
                self.kind.name(),
                kind.name()
            )))
        }
    }
}

impl ModelConfig {
    /// The kind's own keys of this `config.json` ([`parse_config`]).
    pub fn parse<C: DeserializeOwned>(&self, kind: ModelKind) -> Result<C> {
        parse_config(&self.json, kind, &self.source)
    }
}

/// The JSON object of a kind's configuration: `{"model": kind, ...the fields of c}` (no
/// `"format"`: [`write_config`] adds it to the file).
pub fn config_json<C: Serialize>(kind: ModelKind, c: &C) -> serde_json::Value {
    let mut v = serde_json::to_value(c).expect("a configuration is a JSON object");
    v["model"] = kind.name().into();
    v
}

/// Reads the keys of a model of `kind` from a `config.json` object (keys of other parts are
/// ignored). `source` names the file in errors, which name the field too: `config.json:
/// invalid type: string "x", expected usize (field "hidden_size")`.
pub fn parse_config<C: DeserializeOwned>(
    json: &serde_json::Value,
    kind: ModelKind,
    source: &str,
) -> Result<C> {
    if json.get("model").and_then(|m| m.as_str()) != Some(kind.name()) {
        return Err(Error::Input(format!(
            "{source}: not {} (expected \"model\": \"{}\")",
            kind.describe(),
            kind.name()
        )));
    }
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Error::Input(format!("{source}: {inner}"))
        } else {
            Error::Input(format!("{source}: {inner} (field \"{path}\")"))
        }
    })
}

/// A value stored in `config.json` by its name (a cell: `"lstm"`; an attention:
/// `"general"`), read with the type's own parser, whose message says what is allowed.
pub trait Named: Sized + std::str::FromStr<Err = Error> {
    /// The name written.
    fn as_name(&self) -> &'static str;
}

impl Named for crate::core::config::Mode {
    fn as_name(&self) -> &'static str {
        self.name()
    }
}

/// `#[serde(with = "crate::models::by_name")]` for a [`Named`] field.
pub mod by_name {
    use super::Named;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the name.
    pub fn serialize<T: Named, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_name())
    }

    /// Reads a name with the type's parser.
    pub fn deserialize<'de, T: Named, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Writes `dir/config.json` atomically: `json` (which holds `"model"`) with `"format"` set
/// to [`FORMAT_VERSION`].
/// The precision of the recurrent weights a model directory records in its config.json
/// (`"precision"`: `f16`, `bf16` or `int8`, written by `recur quantize`; absent: `f32`).
pub fn precision_of(cfg: &ModelConfig) -> Result<crate::Precision> {
    match cfg.json.get("precision") {
        None => Ok(crate::Precision::F32),
        Some(serde_json::Value::String(s)) => s
            .parse()
            .map_err(|e| crate::Error::Config(format!("{}: {e}", cfg.source))),
        Some(v) => Err(crate::Error::Config(format!(
            "{}: \"precision\" must be a string (f32, f16, bf16 or int8), got {v}",
            cfg.source
        ))),
    }
}

pub fn write_config(dir: impl AsRef<Path>, mut json: serde_json::Value) -> Result<()> {
    json["format"] = FORMAT_VERSION.into();
    let text = serde_json::to_string_pretty(&json).expect("JSON of a configuration");
    crate::io::state_dict::write_atomic(&dir.as_ref().join(CONFIG_FILE), text.as_bytes())
}
