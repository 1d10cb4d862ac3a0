//! The ONNX reader and executor on arbitrary bytes: decoding and checking must return an error
//! or a model, never panic or allocate beyond the limits; a model that loads is run on small
//! inputs made from its declared input types (any dynamic dimension = 2), under an element
//! budget of 2^22, and must again return an error or outputs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recur_onnx::reader::Dim;
use recur_onnx::{DType, Model, Value};
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let Ok(mut model) = Model::from_bytes(data, "fuzz") else {
        return;
    };
    model.set_max_elements(1 << 22);
    let mut feeds = HashMap::new();
    for info in model.required_inputs() {
        let shape: Vec<usize> = match &info.shape {
            None => vec![2],
            Some(s) => s
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => *n,
                    Dim::Param(_) => 2,
                })
                .collect(),
        };
        let n: usize = match shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
            Some(n) if n <= 4096 => n,
            _ => return,
        };
        let v = match info.dtype.unwrap_or(DType::F32) {
            DType::F32 => Value::f32(shape, (0..n).map(|i| (i % 7) as f32 * 0.25 - 0.5).collect()),
            DType::F64 => Value::f64(shape, (0..n).map(|i| (i % 5) as f64 * 0.5 - 1.0).collect()),
            t => Value::int(t, shape, (0..n).map(|i| (i % 3) as i64).collect()),
        };
        feeds.insert(info.name.clone(), v);
    }
    let _ = model.run(&feeds, "fuzz");
});
