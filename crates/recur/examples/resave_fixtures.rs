//! Loads every parity fixture's PyTorch weights into recur and saves them back with
//! `recur::io::state_dict::save`, one file per case, so that `scripts/check_saved.py DIR` can
//! prove PyTorch's `load_state_dict(..., strict=True)` accepts what recur writes:
//!
//!     cargo run --release -p recur --example resave_fixtures -- /tmp/resaved
//!     python3 scripts/check_saved.py /tmp/resaved

use recur::io::state_dict::{is_cell, load_cell, load_rnn, save, LoadOptions, TensorFile};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: resave_fixtures OUT_DIR")?,
    );
    std::fs::create_dir_all(&out)?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity");
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let f = TensorFile::read(&p)?;
        let mode = f.metadata().get("mode").cloned().unwrap_or_default();
        let opts = LoadOptions {
            prefix: Some("params".into()),
            relu: mode.starts_with("rnn").then(|| mode == "rnn_relu"),
            batch_first: false,
        };
        let dst = out.join(p.file_name().unwrap());
        if is_cell(&f, Some("params")) {
            let c = load_cell::<f32>(&f, &opts)?;
            save(c.layout(), c.params(), "", &dst)?;
        } else {
            let r = load_rnn::<f32>(&f, &opts)?;
            save(r.layout(), r.params(), "", &dst)?;
        }
        n += 1;
    }
    println!("saved {n} state_dicts to {}", out.display());
    Ok(())
}
