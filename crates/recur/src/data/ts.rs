//! The sktime `.ts` format: labelled (multivariate, possibly variable-length) time series.
//!
//! ```text
//! # comment
//! @problemName JapaneseVowels
//! @timeStamps false
//! @univariate false
//! @dimensions 2
//! @equalLength false
//! @classLabel true 1 2
//! @data
//! 0.1,0.2,0.3:1.0,1.1,1.2:2
//! ```
//!
//! `#` lines are comments and `@` lines the header (keys are case-insensitive); after `@data`
//! every line is one series: its dimensions separated by `:`, the values of a dimension by `,`,
//! and the class label last. Every dimension of a series must have the same length (the
//! series becomes a (T, dims) matrix); lengths may differ between series unless
//! `@equalLength true` and `@seriesLength` say otherwise. `@timeStamps true` and regression
//! targets (`@targetLabel true`) are not supported, and unlabelled files
//! (`@classLabel false`) are an error. Missing values (`?`), NaN and infinity are errors
//! naming the line, the dimension and the position.
//!
//! Header problems are always errors; `skip_bad_lines` only skips malformed series.
//!
//! ```
//! let file = "@dimensions 2\n@classLabel true a b\n@data\n1,2,3:4,5,6:b\n";
//! let d = recur::data::ts::parse(file.as_bytes(), "x.ts", &Default::default()).unwrap();
//! let s = &d.series[0];
//! assert_eq!((s.len, s.label.as_str()), (3, "b"));
//! // (T, dims) row-major: step t holds dimension 0 then dimension 1.
//! assert_eq!(s.values, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
//! ```

use super::{lines, number, read_file, show, utf8, Collector, ReadReport};
use crate::error::{Error, Result};
use std::path::Path;

/// How to read a `.ts` file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TsOptions {
    /// Skip malformed series (counted in the report) instead of failing on the first.
    pub skip_bad_lines: bool,
}

/// One labelled series.
#[derive(Clone, Debug, PartialEq)]
pub struct TsSeries {
    /// (len, dims), row-major: `values[t * dims + d]` is dimension `d` at step `t`.
    pub values: Vec<f64>,
    /// The number of steps, T.
    pub len: usize,
    /// The class label.
    pub label: String,
    /// The line (1-based) of the series.
    pub line: usize,
}

/// The series of a `.ts` file and what its header says.
#[derive(Clone, Debug, PartialEq)]
pub struct TsData {
    /// `@problemName`, if given.
    pub problem_name: Option<String>,
    /// The number of dimensions of every series.
    pub dims: usize,
    /// The class labels listed by `@classLabel true ...`, in the header's order.
    pub class_labels: Vec<String>,
    /// The series, in file order.
    pub series: Vec<TsSeries>,
    /// What was read and skipped.
    pub report: ReadReport,
}

/// Reads the `.ts` file at `path` (see [`parse`]).
pub fn read(path: impl AsRef<Path>, opts: &TsOptions) -> Result<TsData> {
    let path = path.as_ref();
    parse(&read_file(path)?, &path.display().to_string(), opts)
}

#[derive(Default)]
struct Header {
    problem_name: Option<String>,
    dims: Option<usize>,
    equal_length: bool,
    series_length: Option<usize>,
    labels: Option<Vec<String>>,
}

fn flag(key: &str, words: &[&str]) -> std::result::Result<bool, String> {
    match words.first().map(|w| w.to_ascii_lowercase()).as_deref() {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        _ => Err(format!(
            "@{key}: expected true or false, found {}",
            show(&words.join(" "))
        )),
    }
}

fn count(key: &str, words: &[&str]) -> std::result::Result<usize, String> {
    match words {
        [w] => match w.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "@{key}: expected a positive integer, found {}",
                show(w)
            )),
        },
        _ => Err(format!(
            "@{key}: expected one positive integer, found {}",
            show(&words.join(" "))
        )),
    }
}

/// Reads one header line (without the `@`) into `h`.
fn header_line(h: &mut Header, text: &str) -> std::result::Result<(), String> {
    let mut words = text.split_whitespace();
    let key = words.next().unwrap_or("").to_ascii_lowercase();
    let rest: Vec<&str> = words.collect();
    match key.as_str() {
        "problemname" => h.problem_name = Some(rest.join(" ")),
        "timestamps" => {
            if flag(&key, &rest)? {
                return Err("@timeStamps true: series with time stamps are not supported".into());
            }
        }
        "missing" | "univariate" => {
            flag(&key, &rest)?;
        }
        "dimensions" => h.dims = Some(count(&key, &rest)?),
        "equallength" => h.equal_length = flag(&key, &rest)?,
        "serieslength" => h.series_length = Some(count(&key, &rest)?),
        "classlabel" => {
            if !flag(&key, &rest)? {
                return Err("@classLabel false: unlabelled series are not supported".into());
            }
            let labels: Vec<String> = rest[1..].iter().map(|s| s.to_string()).collect();
            if labels.is_empty() {
                return Err("@classLabel true lists no class labels".into());
            }
            for (k, l) in labels.iter().enumerate() {
                if labels[..k].contains(l) {
                    return Err(format!("@classLabel lists the label {} twice", show(l)));
                }
            }
            h.labels = Some(labels);
        }
        "targetlabel" => {
            if flag(&key, &rest)? {
                return Err("@targetLabel true: regression targets are not supported".into());
            }
        }
        _ => return Err(format!("unknown header line @{}", show(&key))),
    }
    Ok(())
}

/// Parses one data line into a series.
fn series(text: &str, no: usize, dims: usize, h: &Header) -> std::result::Result<TsSeries, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (label, dim_parts) = match parts.split_last() {
        Some((l, d)) if !d.is_empty() => (l.trim(), d),
        _ => {
            return Err(format!(
                "expected {dims} dimensions and a class label separated by ':', found no ':'"
            ))
        }
    };
    if dim_parts.len() != dims {
        return Err(format!(
            "expected {dims} dimensions and a class label separated by ':', found {} dimensions",
            dim_parts.len()
        ));
    }
    let labels = h.labels.as_deref().unwrap_or(&[]);
    if !labels.iter().any(|l| l == label) {
        return Err(format!(
            "class label {} is not one of @classLabel ({})",
            show(label),
            labels.join(" ")
        ));
    }
    let mut len = 0;
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(dims);
    for (d, part) in dim_parts.iter().enumerate() {
        if part.trim().is_empty() {
            return Err(format!("dimension {} is empty", d + 1));
        }
        let mut col = Vec::new();
        for (i, v) in part.split(',').enumerate() {
            let x = if v.trim() == "?" {
                Err("missing value '?'".to_string())
            } else {
                number(v)
            };
            col.push(x.map_err(|m| format!("dimension {}, value {}: {m}", d + 1, i + 1))?);
        }
        if d == 0 {
            len = col.len();
        } else if col.len() != len {
            return Err(format!(
                "dimension {} has {} values but dimension 1 has {len}: every dimension of a \
                 series must have the same length",
                d + 1,
                col.len()
            ));
        }
        cols.push(col);
    }
    if let (true, Some(n)) = (h.equal_length, h.series_length) {
        if len != n {
            return Err(format!(
                "expected {n} values per dimension (@seriesLength), found {len}"
            ));
        }
    }
    let mut values = vec![0.0; len * dims];
    for (d, col) in cols.iter().enumerate() {
        for (t, &x) in col.iter().enumerate() {
            values[t * dims + d] = x;
        }
    }
    Ok(TsSeries {
        values,
        len,
        label: label.to_string(),
        line: no,
    })
}

/// Reads a `.ts` file from its bytes; `source` names it in messages.
pub fn parse(bytes: &[u8], source: &str, opts: &TsOptions) -> Result<TsData> {
    let mut c: Collector<TsSeries> = Collector::new(source, opts.skip_bad_lines);
    let mut h = Header::default();
    let mut in_data = false;
    let mut dims = None;
    let mut n = 0;
    for (no, line) in lines(bytes) {
        n = no;
        let text = match utf8(line) {
            Ok(t) => t.trim(),
            Err(m) if in_data => {
                c.bad(no, m)?;
                continue;
            }
            Err(m) => return Err(c.error(no, &m)),
        };
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if !in_data {
            let Some(rest) = text.strip_prefix('@') else {
                return Err(c.error(
                    no,
                    &format!(
                        "expected a header line (@...) or @data before the series, found {}",
                        show(text)
                    ),
                ));
            };
            if rest.trim().eq_ignore_ascii_case("data") {
                if h.labels.is_none() {
                    return Err(c.error(
                        no,
                        "@data before @classLabel true ...: the class labels are not given",
                    ));
                }
                in_data = true;
                dims = h.dims;
                continue;
            }
            header_line(&mut h, rest).map_err(|m| c.error(no, &m))?;
            continue;
        }
        if text.starts_with('@') {
            return Err(c.error(no, &format!("header line {} after @data", show(text))));
        }
        // Without @dimensions, the first series sets the number of dimensions.
        let d = dims.unwrap_or_else(|| text.split(':').count().saturating_sub(1).max(1));
        let r = series(text, no, d, &h);
        if r.is_ok() {
            dims = Some(d);
        }
        c.take(no, r)?;
    }
    c.set_lines(n);
    if !in_data {
        return Err(Error::Input(format!(
            "{source}: no @data line: not a .ts file?"
        )));
    }
    let r = c.finish("series")?;
    Ok(TsData {
        problem_name: h.problem_name,
        dims: dims.unwrap_or(0),
        class_labels: h.labels.unwrap_or_default(),
        series: r.records,
        report: r.report,
    })
}
