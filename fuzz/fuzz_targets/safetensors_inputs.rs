//! The safetensors reader of `--inputs` on arbitrary bytes: an error or tensors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = recur_onnx::io::parse_safetensors(data, "fuzz");
});
