//! Property tests (proptest) of checkpoint files, which `--resume` reads after crashes: a
//! valid checkpoint with any bytes changed, cut short or extended, and arbitrary metadata
//! documents never make `Checkpoint::from_bytes` (or reading its tensors and fields) panic;
//! each gives a checkpoint or an error that names the file. `PROPTEST_CASES=N` sets the
//! number of cases (docs/fuzzing.md).

use proptest::prelude::*;
#[path = "../../../tests/support/proptest_cases.rs"]
mod proptest_cases;
use proptest_cases::config;
use recur::io::state_dict::{serialize_tensors, OutTensor};
use recur::train::checkpoint::{rng_from_state, Checkpoint, CheckpointWriter, META_KEY};

/// A small valid checkpoint, like the runner writes.
fn valid() -> Vec<u8> {
    let mut w = CheckpointWriter::new(serde_json::json!({
        "format": 1,
        "run": {"step": 12, "curve": []},
        "task": {"cursor": 12, "rng": {"seed": "00".repeat(32), "stream": "0", "word_pos": "1f"}},
    }));
    w.f32("param.rnn", &[6], vec![0.5, -1.0, 2.0, 0.0, 1e-3, 7.0]);
    w.f32("optimizer.exp_avg", &[6], vec![0.0; 6]);
    w.f32("state.h", &[1, 2, 3], vec![0.25; 6]);
    w.to_bytes().unwrap()
}

/// Everything `--resume` reads from a checkpoint.
fn use_it(c: &Checkpoint) {
    for name in ["param.rnn", "optimizer.exp_avg", "state.h", "missing"] {
        for len in [0, 6, 7] {
            let _ = c.f32(name, len);
        }
    }
    for key in ["run", "task", "format", "nope"] {
        let _ = c.field(key);
        let _ = c.u64_field(key);
    }
    if let Ok(t) = c.field("task") {
        let _ = rng_from_state(&t["rng"], "task.rng");
    }
}

fn check(bytes: &[u8]) {
    match Checkpoint::from_bytes(bytes, "ckpt.safetensors") {
        Ok(c) => use_it(&c),
        Err(e) => assert!(e.to_string().contains("ckpt.safetensors"), "{e}"),
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn mutated_checkpoints_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        how in 0u8..3,
    ) {
        let mut b = valid();
        for (i, v) in &edits {
            let k = i.index(b.len());
            b[k] = *v;
        }
        match how {
            0 => b.truncate(cut.index(b.len() + 1)),
            1 => b.extend_from_slice(&[0xff; 13]),
            _ => {}
        }
        check(&b);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&b);
    }

    #[test]
    fn arbitrary_metadata_never_panics(meta in "\\PC{0,80}") {
        // Any text under the checkpoint key: valid JSON of the wrong shape, or not JSON.
        let bytes = serialize_tensors(
            &[("param.rnn".into(), vec![2], OutTensor::F32(&[1.0, 2.0]))],
            &[(META_KEY, &meta)],
        )
        .unwrap();
        check(&bytes);
    }

    #[test]
    fn rng_states_of_any_shape_never_panic(
        seed in "[0-9a-fA-Fxz]{0,70}",
        stream in "[0-9a-f]{0,40}",
        pos in "[0-9a-f-]{0,40}",
    ) {
        let v = serde_json::json!({"seed": seed, "stream": stream, "word_pos": pos});
        let _ = rng_from_state(&v, "rng");
    }
}
