//! The native backend's typed errors: [`Unsupported`] for a graph outside its set (which
//! `--backend auto` answers by using another backend) and [`LoadError`] for everything a load
//! can report, so that callers match on the kind instead of inspecting messages.

use std::fmt;

/// Why a graph is not for the native backend: the node (name and operator) and the reason,
/// as one sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
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

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

/// Why the native backend did not load a model.
#[derive(Debug)]
pub enum LoadError {
    /// The graph is outside the native set; another backend may run it.
    Unsupported(Unsupported),
    /// The file or the machine failed (an undecodable file, no threads): no backend will do
    /// better.
    Failed(anyhow::Error),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Unsupported(u) => u.fmt(f),
            LoadError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl From<Unsupported> for LoadError {
    fn from(u: Unsupported) -> Self {
        LoadError::Unsupported(u)
    }
}
