//! Training checkpoints: everything a run needs to continue exactly where it stopped, in one
//! safetensors file written atomically.
//!
//! A checkpoint holds named tensors (the parameters, the optimizer's buffers, a carried
//! recurrent state, ...) and one JSON document of metadata (the step, the data cursor, the
//! random generators' positions, the training options) under the `__metadata__` key
//! `recur.checkpoint`. Because it is a single file replaced by [`write_atomic`], a crash or a
//! `kill -9` at any moment leaves either the previous complete checkpoint or the new one.
//!
//! ```
//! use recur::train::checkpoint::{Checkpoint, CheckpointWriter};
//! let dir = std::env::temp_dir().join(format!("recur-ckpt-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("checkpoint.safetensors");
//! let mut w = CheckpointWriter::new(serde_json::json!({"step": 7}));
//! w.f32("model.weight", &[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
//! w.write(&path).unwrap();
//! let c = Checkpoint::read(&path).unwrap();
//! assert_eq!(c.meta()["step"], 7);
//! assert_eq!(c.f32("model.weight", 4).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use crate::error::{Error, Result};
use crate::io::state_dict::{serialize_tensors, write_atomic, OutTensor, TensorFile};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// The `__metadata__` key that holds a checkpoint's JSON document.
pub const META_KEY: &str = "recur.checkpoint";

/// The random generator recur's training uses (dropout masks, data order): ChaCha8, whose
/// position can be saved and restored exactly ([`rng_state`], [`rng_from_state`]).
pub type TrainRng = ChaCha8Rng;

/// A generator seeded with `seed`.
pub fn seeded(seed: u64) -> TrainRng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// The exact position of `rng`, as JSON (seed, stream and word position as hex strings).
pub fn rng_state(rng: &TrainRng) -> serde_json::Value {
    let seed: String = rng.get_seed().iter().map(|b| format!("{b:02x}")).collect();
    serde_json::json!({
        "seed": seed,
        "stream": format!("{:x}", rng.get_stream()),
        "word_pos": format!("{:x}", rng.get_word_pos()),
    })
}

/// The generator at the position [`rng_state`] recorded; `what` names it in errors.
pub fn rng_from_state(v: &serde_json::Value, what: &str) -> Result<TrainRng> {
    let bad = |m: &str| Error::Input(format!("{what}: {m}"));
    let field = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .ok_or_else(|| bad(&format!("missing the string field '{k}'")))
    };
    let hex = field("seed")?;
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad("'seed' must be 64 hex digits"));
    }
    let mut seed = [0u8; 32];
    for (k, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * k..2 * k + 2], 16)
            .map_err(|_| bad("'seed' must be 64 hex digits"))?;
    }
    let stream = u64::from_str_radix(field("stream")?, 16)
        .map_err(|_| bad("'stream' must be a hex number"))?;
    let pos = u128::from_str_radix(field("word_pos")?, 16)
        .map_err(|_| bad("'word_pos' must be a hex number"))?;
    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_stream(stream);
    rng.set_word_pos(pos);
    Ok(rng)
}

/// Collects the tensors and metadata of a checkpoint, then writes them atomically.
pub struct CheckpointWriter {
    meta: serde_json::Value,
    f32s: Vec<(String, Vec<usize>, Vec<f32>)>,
    f64s: Vec<(String, Vec<usize>, Vec<f64>)>,
}

impl CheckpointWriter {
    /// A checkpoint with this metadata document and no tensors yet.
    pub fn new(meta: serde_json::Value) -> CheckpointWriter {
        CheckpointWriter {
            meta,
            f32s: Vec::new(),
            f64s: Vec::new(),
        }
    }

    /// The metadata, to add fields to.
    pub fn meta_mut(&mut self) -> &mut serde_json::Value {
        &mut self.meta
    }

    /// Adds an f32 tensor (stored bit for bit).
    pub fn f32(&mut self, name: impl Into<String>, shape: &[usize], values: Vec<f32>) {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        self.f32s.push((name.into(), shape.to_vec(), values));
    }

    /// Adds an f64 tensor (stored bit for bit).
    pub fn f64(&mut self, name: impl Into<String>, shape: &[usize], values: Vec<f64>) {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        self.f64s.push((name.into(), shape.to_vec(), values));
    }

    /// The names of the tensors added so far (the f32 ones, then the f64 ones).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.f32s
            .iter()
            .map(|(n, _, _)| n.as_str())
            .chain(self.f64s.iter().map(|(n, _, _)| n.as_str()))
    }

    /// The bytes of the checkpoint file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let tensors: Vec<(String, Vec<usize>, OutTensor<'_>)> = self
            .f32s
            .iter()
            .map(|(n, s, v)| (n.clone(), s.clone(), OutTensor::F32(v)))
            .chain(
                self.f64s
                    .iter()
                    .map(|(n, s, v)| (n.clone(), s.clone(), OutTensor::F64(v))),
            )
            .collect();
        let meta = serde_json::to_string(&self.meta).expect("JSON of checkpoint metadata");
        serialize_tensors(&tensors, &[(META_KEY, &meta)])
    }

    /// Writes the checkpoint to `path`: a temporary file in the same folder, flushed, then
    /// renamed over `path`, so `path` always holds a complete checkpoint.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }
}

/// A checkpoint read back: its metadata and tensors.
pub struct Checkpoint {
    meta: serde_json::Value,
    file: TensorFile,
}

impl Checkpoint {
    /// Reads and checks a checkpoint file; the error names the file and what is wrong.
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let file = TensorFile::read(path)?;
        Checkpoint::from_file(file)
    }

    /// A checkpoint from file bytes (`source` names it in errors).
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Checkpoint> {
        Checkpoint::from_file(TensorFile::from_bytes(bytes, source)?)
    }

    fn from_file(file: TensorFile) -> Result<Checkpoint> {
        let text = file.metadata().get(META_KEY).ok_or_else(|| {
            Error::Input(format!(
                "{}: not a recur checkpoint (no '{META_KEY}' metadata)",
                file.source()
            ))
        })?;
        let meta: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            Error::Input(format!(
                "{}: the checkpoint metadata is not valid JSON ({e})",
                file.source()
            ))
        })?;
        if !meta.is_object() {
            return Err(Error::Input(format!(
                "{}: the checkpoint metadata must be a JSON object",
                file.source()
            )));
        }
        Ok(Checkpoint { meta, file })
    }

    /// The metadata document.
    pub fn meta(&self) -> &serde_json::Value {
        &self.meta
    }

    /// Where the checkpoint came from (for messages).
    pub fn source(&self) -> &str {
        self.file.source()
    }

    /// Whether the checkpoint holds tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.file.contains(name)
    }

    /// The f32 tensor `name`, which must hold `len` values.
    pub fn f32(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let t = self.file.float::<f32>(name)?;
        if t.data().len() != len {
            return Err(Error::Input(format!(
                "{}: tensor '{name}' holds {} values, expected {len} (was the checkpoint written \
                 for another model?)",
                self.source(),
                t.data().len()
            )));
        }
        Ok(t.into_data())
    }

    /// The f64 tensor `name`, which must hold `len` values.
    pub fn f64(&self, name: &str, len: usize) -> Result<Vec<f64>> {
        let t = self.file.float::<f64>(name)?;
        if t.data().len() != len {
            return Err(Error::Input(format!(
                "{}: tensor '{name}' holds {} values, expected {len} (was the checkpoint written \
                 for another model?)",
                self.source(),
                t.data().len()
            )));
        }
        Ok(t.into_data())
    }

    /// The metadata field `key` (an error naming the file if it is missing).
    pub fn field(&self, key: &str) -> Result<&serde_json::Value> {
        self.meta.get(key).ok_or_else(|| {
            Error::Input(format!(
                "{}: the checkpoint metadata has no field '{key}'",
                self.source()
            ))
        })
    }

    /// The metadata field `key` as an unsigned integer.
    pub fn u64_field(&self, key: &str) -> Result<u64> {
        self.field(key)?.as_u64().ok_or_else(|| {
            Error::Input(format!(
                "{}: the checkpoint field '{key}' must be a non-negative integer",
                self.source()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn rng_position_round_trips() {
        let mut a = seeded(42);
        for _ in 0..37 {
            a.next_u32();
        }
        let mut b = rng_from_state(&rng_state(&a), "rng").unwrap();
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn bad_rng_state_is_an_error() {
        let v = serde_json::json!({"seed": "zz", "stream": "0", "word_pos": "0"});
        let e = rng_from_state(&v, "data rng").unwrap_err().to_string();
        assert!(e.contains("data rng") && e.contains("seed"), "{e}");
    }

    #[test]
    fn not_a_checkpoint() {
        let bytes =
            serialize_tensors(&[("w".into(), vec![1], OutTensor::F32(&[1.0]))], &[]).unwrap();
        let e = Checkpoint::from_bytes(&bytes, "x.safetensors")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("x.safetensors") && e.contains("not a recur checkpoint"));
    }

    #[test]
    fn values_are_kept_bit_for_bit() {
        let v = vec![f32::MIN_POSITIVE, -0.0, 1.0 / 3.0, 1e-45, f32::MAX];
        let mut w = CheckpointWriter::new(serde_json::json!({"k": 1}));
        w.f32("a", &[5], v.clone());
        let c = Checkpoint::from_bytes(&w.to_bytes().unwrap(), "mem").unwrap();
        let got = c.f32("a", 5).unwrap();
        for (x, y) in got.iter().zip(&v) {
            assert_eq!(x.to_bits(), y.to_bits());
        }
        let e = c.f32("a", 4).err().unwrap().to_string();
        assert!(e.contains("expected 4"), "{e}");
    }
}
