//! JSON Lines: one JSON object per line, with a label field and one or more text fields.
//!
//! The label may be a string, an integer or a boolean (written as JSON writes it); the text
//! fields must be strings and are joined with `separator`, leaving out empty ones. A record
//! whose label is empty, or whose text fields are all empty, is malformed. Blank lines are
//! skipped; other fields of the objects are ignored.
//!
//! ```
//! use recur::data::jsonl::{parse_labelled, LabelledJsonl};
//! let file = r#"{"label": "spam", "subject": "WIN", "body": "Click here"}
//! {"label": "ham", "subject": "Re: lunch", "body": ""}
//! "#;
//! let opts = LabelledJsonl {
//!     text: vec!["subject".into(), "body".into()],
//!     ..LabelledJsonl::default()
//! };
//! let data = parse_labelled(file.as_bytes(), "mail.jsonl", &opts).unwrap();
//! assert_eq!(data.records[0].text, "WIN\nClick here");
//! assert_eq!(data.records[1].text, "Re: lunch");
//! ```

use super::{lines, read_file, show, utf8, Collector, LabelledText, Records};
use crate::error::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// How to read labelled texts from a JSON Lines file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelledJsonl {
    /// The field of the label. Default: `"label"`.
    pub label: String,
    /// The fields of the text, joined in this order. Default: `["text"]`.
    pub text: Vec<String>,
    /// What joins the text fields. Default: `"\n"`.
    pub separator: String,
    /// Skip malformed lines (counted in the report) instead of failing on the first.
    pub skip_bad_lines: bool,
}

impl Default for LabelledJsonl {
    fn default() -> LabelledJsonl {
        LabelledJsonl {
            label: "label".to_string(),
            text: vec!["text".to_string()],
            separator: "\n".to_string(),
            skip_bad_lines: false,
        }
    }
}

/// Reads labelled texts from the file at `path` (see [`parse_labelled`]).
pub fn read_labelled(
    path: impl AsRef<Path>,
    opts: &LabelledJsonl,
) -> Result<Records<LabelledText>> {
    let path = path.as_ref();
    parse_labelled(&read_file(path)?, &path.display().to_string(), opts)
}

fn record(
    line: &[u8],
    no: usize,
    opts: &LabelledJsonl,
) -> std::result::Result<LabelledText, String> {
    let text = utf8(line)?;
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(obj) = v else {
        return Err(format!("expected a JSON object, found {}", kind(&v)));
    };
    let label = match obj.get(&opts.label) {
        None => return Err(format!("no field \"{}\" (the label)", opts.label)),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => {
            return Err(format!(
                "field \"{}\" (the label) must be a string, an integer or a boolean, found {}",
                opts.label,
                kind(other)
            ))
        }
    };
    if label.is_empty() {
        return Err(format!("field \"{}\" (the label) is empty", opts.label));
    }
    let mut parts = Vec::with_capacity(opts.text.len());
    for f in &opts.text {
        match obj.get(f) {
            None => return Err(format!("no field \"{f}\" (text)")),
            Some(Value::String(s)) => {
                let s = s.trim();
                if !s.is_empty() {
                    parts.push(s);
                }
            }
            Some(other) => {
                return Err(format!(
                    "field \"{f}\" (text) must be a string, found {}",
                    kind(other)
                ))
            }
        }
    }
    if parts.is_empty() {
        return Err(format!("the text ({}) is empty", opts.text.join(", ")));
    }
    Ok(LabelledText {
        label,
        text: parts.join(&opts.separator),
        line: no,
    })
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", show(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Reads labelled texts from the bytes of a JSON Lines file; `source` names it in messages.
pub fn parse_labelled(
    bytes: &[u8],
    source: &str,
    opts: &LabelledJsonl,
) -> Result<Records<LabelledText>> {
    if opts.text.is_empty() {
        return Err(Error::Config(format!("{source}: no text fields chosen")));
    }
    let mut c = Collector::new(source, opts.skip_bad_lines);
    let mut n = 0;
    for (no, line) in lines(bytes) {
        n = no;
        if line.trim_ascii().is_empty() {
            continue;
        }
        c.take(no, record(line, no, opts))?;
    }
    c.set_lines(n);
    c.finish("labelled texts")
}
