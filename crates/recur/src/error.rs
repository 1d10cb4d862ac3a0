use std::path::{Path, PathBuf};

/// What went wrong, with a message that says what was expected and what was found.
///
/// The message ([`std::fmt::Display`]) is complete on its own line: where an error has a
/// cause from the system or a parser ([`Error::File`], [`Error::Json`]), its text is part of
/// the message, and [`std::error::Error::source`] gives the cause itself, typed, to programs
/// that want to look at it (an [`std::io::ErrorKind`], say).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An invalid configuration (sizes, options).
    #[error("{0}")]
    Config(String),
    /// An argument of the wrong shape, or an invalid value (lengths, states, masks).
    #[error("{0}")]
    Input(String),
    /// A weights file or tensor file that cannot be used; the message names the tensor.
    #[error("{0}")]
    Weights(String),
    /// A file that cannot be used, for a reason that is not an operating-system error (not a
    /// file name, not gzip, ...); the message names the file.
    #[error("{0}")]
    Io(String),
    /// A file that cannot be read or written: `path: what: the system's reason`.
    #[error("{}: {what}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What was being done: `cannot read`, `cannot write`, ...
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Text that is not valid JSON: `context: invalid JSON (the parser's reason)`.
    #[error("{context}: invalid JSON ({source})")]
    Json {
        /// Where the text came from (a file name, a field).
        context: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A training run that cannot start or continue ([`crate::train::run`]): a checkpoint
    /// missing or of another run, a non-finite step, ...
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
}

impl Error {
    /// [`Error::File`] for `path`.
    pub fn file(path: impl AsRef<Path>, what: &'static str, source: std::io::Error) -> Error {
        Error::File {
            path: path.as_ref().to_path_buf(),
            what,
            source,
        }
    }

    /// [`Error::Json`] for text from `context`.
    pub fn json(context: impl std::fmt::Display, source: serde_json::Error) -> Error {
        Error::Json {
            context: context.to_string(),
            source,
        }
    }

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

/// `Result` with recur's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
