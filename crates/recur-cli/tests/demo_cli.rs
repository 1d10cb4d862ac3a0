//! `recur demo` (the README's first command) on a small setting: it trains, reports, and
//! writes its plots and weights into --out; the weights load back as a PyTorch-named LSTM.

use std::process::Command;

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

#[test]
fn demo_trains_reports_and_writes_plots() {
    let dir = TmpDir::new("demo");
    let out = dir.path("out");
    let o = Command::new(env!("CARGO_BIN_EXE_recur"))
        .args([
            "demo",
            "--train-size",
            "600",
            "--epochs",
            "2",
            "--hidden-size",
            "16",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for want in [
        "epoch  2/2",
        "test accuracy",
        "by length:",
        "examples",
        "wrote ",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    for f in ["demo.png", "demo.svg", "model.safetensors"] {
        let len = std::fs::metadata(out.join(f)).unwrap().len();
        assert!(len > 1000, "{f}: {len} bytes");
    }
    let file = recur::io::state_dict::TensorFile::read(out.join("model.safetensors")).unwrap();
    let rnn = recur::io::state_dict::load_rnn::<f32>(
        &file,
        &recur::io::state_dict::LoadOptions {
            prefix: Some("rnn".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(rnn.config().hidden_size, 16);
    assert!(file.contains("head.weight") && file.contains("head.bias"));
}
