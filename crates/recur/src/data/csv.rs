//! Numeric columns of a CSV file (time series).
//!
//! The first line is the header (column names; set `header: false` for files without one,
//! whose columns are then chosen by index). Fields are separated by `delimiter` and may be
//! quoted with `"` (a `""` inside quotes is one `"`); a quoted field cannot span lines. Every
//! line must have as many fields as the header; only the chosen columns are parsed, and each
//! of their values must be a finite number: an empty field is a missing value, an error naming
//! the line and the column, as are NaN and infinity. Blank lines are skipped.
//!
//! ```
//! use recur::data::csv::{parse, CsvOptions};
//! let file = "year,month,sunspots\n1749,1,58.0\n1749,2,62.6\n";
//! let t = parse(file.as_bytes(), "sunspots.csv", &CsvOptions::column("sunspots")).unwrap();
//! assert_eq!(t.column(0), vec![58.0, 62.6]);
//! assert_eq!(t.names, ["sunspots"]);
//! assert_eq!(t.lines, [2, 3]);
//! let bad = "date,co2\n19580329,316.1\n19580405,\n";
//! let e = parse(bad.as_bytes(), "co2.csv", &CsvOptions::column("co2")).unwrap_err();
//! assert_eq!(e.to_string(), "co2.csv:3: column 'co2' (field 2): missing value (empty field)");
//! ```

use super::{lines, number, read_file, utf8, Collector, Column, ReadReport};
use crate::error::{Error, Result};
use std::path::Path;

/// How to read numeric columns from a CSV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    /// The columns to read, in the order wanted.
    pub columns: Vec<Column>,
    /// Whether the first line is a header. Default: true.
    pub header: bool,
    /// The field separator. Default: `,`.
    pub delimiter: char,
    /// Skip malformed rows (counted in the report) instead of failing on the first.
    pub skip_bad_lines: bool,
}

impl CsvOptions {
    /// Reads one column (by name or 0-based index) of a file with a header.
    pub fn column(c: impl Into<Column>) -> CsvOptions {
        CsvOptions::columns(vec![c.into()])
    }
    /// Reads these columns of a file with a header.
    pub fn columns(columns: Vec<Column>) -> CsvOptions {
        CsvOptions {
            columns,
            header: true,
            delimiter: ',',
            skip_bad_lines: false,
        }
    }
}

/// The chosen columns of a CSV file.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// The names of the chosen columns (from the header, else `field N`).
    pub names: Vec<String>,
    /// (rows, columns), row-major: `values[r * names.len() + k]` is column `k` of row `r`.
    pub values: Vec<f64>,
    /// The line (1-based) of every row.
    pub lines: Vec<usize>,
    /// What was read and skipped.
    pub report: ReadReport,
}

impl Table {
    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.lines.len()
    }
    /// The values of chosen column `k` (an index into `names`), top to bottom; empty if `k` is
    /// out of range.
    pub fn column(&self, k: usize) -> Vec<f64> {
        let n = self.names.len();
        if k >= n {
            return Vec::new();
        }
        self.values.iter().skip(k).step_by(n).copied().collect()
    }
}

/// Splits one line into fields, unquoting quoted ones.
fn fields(line: &str, delim: char) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    // Whether the current field started with a quote (then only the delimiter may follow the
    // closing quote).
    let mut was_quoted = false;
    while let Some(ch) = chars.next() {
        if quoted {
            if ch == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cur.push(ch);
            }
        } else if ch == delim {
            out.push(std::mem::take(&mut cur));
            was_quoted = false;
        } else if ch == '"' && cur.trim().is_empty() && !was_quoted {
            cur.clear();
            quoted = true;
            was_quoted = true;
        } else if was_quoted && !ch.is_whitespace() {
            return Err(format!(
                "field {}: text after the closing quote",
                out.len() + 1
            ));
        } else {
            cur.push(ch);
        }
    }
    if quoted {
        return Err(format!("field {}: unterminated quote", out.len() + 1));
    }
    out.push(cur);
    Ok(out)
}

/// Reads the chosen columns of the CSV file at `path` (see [`parse`]).
pub fn read(path: impl AsRef<Path>, opts: &CsvOptions) -> Result<Table> {
    let path = path.as_ref();
    parse(&read_file(path)?, &path.display().to_string(), opts)
}

/// Reads the chosen columns of a CSV file from its bytes; `source` names it in messages.
pub fn parse(bytes: &[u8], source: &str, opts: &CsvOptions) -> Result<Table> {
    if opts.columns.is_empty() {
        return Err(Error::Config(format!("{source}: no columns chosen")));
    }
    if opts.delimiter == '"' || opts.delimiter == '\n' || opts.delimiter == '\r' {
        return Err(Error::Config(format!(
            "{source}: the delimiter cannot be {:?}",
            opts.delimiter
        )));
    }
    let header: Option<Vec<String>> = if opts.header {
        let Some((_, first)) = lines(bytes).next() else {
            return Err(Error::Input(format!(
                "{source}: empty file: expected a header line"
            )));
        };
        let text = utf8(first).map_err(|m| Error::Input(format!("{source}:1: {m}")))?;
        let names =
            fields(text, opts.delimiter).map_err(|m| Error::Input(format!("{source}:1: {m}")))?;
        Some(names.into_iter().map(|s| s.trim().to_string()).collect())
    } else {
        None
    };
    let idx: Vec<usize> = opts
        .columns
        .iter()
        .map(|c| c.resolve(header.as_deref(), source))
        .collect::<Result<_>>()?;
    let names: Vec<String> = idx
        .iter()
        .map(|&i| match &header {
            Some(h) => h[i].clone(),
            None => format!("field {}", i + 1),
        })
        .collect();
    let label = |k: usize| match &opts.columns[k] {
        Column::Name(n) => format!("column '{n}' (field {})", idx[k] + 1),
        Column::Index(i) => match &header {
            Some(h) => format!("column '{}' (field {})", h[*i], i + 1),
            None => format!("field {}", i + 1),
        },
    };
    // Without a header, the first data line sets the number of fields.
    let mut width = header.as_ref().map(|h| h.len());
    let mut c: Collector<(usize, Vec<f64>)> = Collector::new(source, opts.skip_bad_lines);
    let mut n = 0;
    for (no, line) in lines(bytes) {
        n = no;
        if opts.header && no == 1 {
            continue;
        }
        let row = utf8(line).and_then(|text| {
            if text.trim().is_empty() {
                return Ok(None);
            }
            let f = fields(text, opts.delimiter)?;
            let w = *width.get_or_insert(f.len());
            if f.len() != w {
                return Err(format!(
                    "expected {w} fields separated by {:?}, found {}",
                    opts.delimiter,
                    f.len()
                ));
            }
            let mut vals = Vec::with_capacity(idx.len());
            for (k, &i) in idx.iter().enumerate() {
                let s = f
                    .get(i)
                    .ok_or_else(|| format!("{}: the line has only {} fields", label(k), f.len()))?;
                vals.push(number(s).map_err(|m| format!("{}: {m}", label(k)))?);
            }
            Ok(Some(vals))
        });
        match row {
            Ok(Some(v)) => c.push((no, v)),
            Ok(None) => {}
            Err(m) => c.bad(no, m)?,
        }
    }
    c.set_lines(n);
    let r = c.finish("rows")?;
    let mut values = Vec::with_capacity(r.records.len() * idx.len());
    let mut line_nos = Vec::with_capacity(r.records.len());
    for (no, v) in r.records {
        line_nos.push(no);
        values.extend(v);
    }
    Ok(Table {
        names,
        values,
        lines: line_nos,
        report: r.report,
    })
}
