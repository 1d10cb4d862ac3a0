//! Errors: every message says what was found and what was expected, naming the node, the
//! operator, the tensor or the file.

/// What went wrong reading or running an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not a valid ONNX model (truncated, corrupt, inconsistent sizes).
    #[error("{0}")]
    Malformed(String),
    /// A valid model that uses something recur does not run (an operator, opset, attribute
    /// value or data type).
    #[error("{0}")]
    Unsupported(String),
    /// Inputs that do not fit the model (missing, wrong type or shape), or a node whose
    /// inputs are inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// A file that cannot be read or written.
    #[error("{0}")]
    Io(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<recur::Error> for Error {
    fn from(e: recur::Error) -> Self {
        Error::Invalid(e.to_string())
    }
}
