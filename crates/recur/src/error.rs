use std::fmt;

/// What went wrong, with a message that says what was expected and what was found.
#[derive(Debug)]
pub enum Error {
    /// An invalid configuration (sizes, options).
    Config(String),
    /// An argument of the wrong shape, or an invalid value (lengths, states, masks).
    Input(String),
    /// A weights file or tensor file that cannot be used; the message names the tensor.
    Weights(String),
    /// A file that cannot be read or written; the message names the file.
    Io(String),
}

impl Error {
    pub(crate) fn shape(what: &str, expected: &[usize], actual: &[usize]) -> Error {
        Error::Input(format!(
            "{what}: expected shape {}, got {}",
            fmt_shape(expected),
            fmt_shape(actual)
        ))
    }
}

/// `[2, 3]` → `(2, 3)`
pub fn fmt_shape(s: &[usize]) -> String {
    let parts: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) | Error::Input(m) | Error::Weights(m) | Error::Io(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// `Result` with recur's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
