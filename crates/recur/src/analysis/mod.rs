//! Looking inside a trained or training network: gradient-flow diagnostics
//! ([`diagnostics`]) and the evaluation metrics of the tasks ([`metrics`]).

pub mod diagnostics;
pub mod metrics;
