//! The native backend's typed errors: [`Unsupported`] for a graph outside its set (which
//! `--backend auto` answers by using another backend) and [`LoadError`] for everything a load
//! can report, so that callers match on the kind instead of inspecting messages.

use std::fmt;

/// Why a graph is not for the native backend: the node (name and operator) and the reason,
/// as one sentence.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(String);

impl Unsupported {
    /// `label: why`, where `label` names the node (`node 'x' (Conv)`).
    pub fn at(label: &str, why: impl fmt::Display) -> Unsupported {
        Unsupported(format!("{label}: {why}"))
    }

    /// A reason about the graph as a whole.
    pub fn graph(why: impl Into<String>) -> Unsupported {
        Unsupported(why.into())
    }
}

/// Why the native backend did not load a model.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The graph is outside the native set; another backend may run it.
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
    /// The file or the machine failed (an undecodable file, no threads): no backend will do
    /// better.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}
