//! Collecting every problem of a document as `path: reason`, instead of stopping at the first.

use std::fmt;

/// One problem found in a document: where (`experiments[2].arms[1].selector`) and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Issue {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// Every problem found in a refused document. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<Issue>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// Accumulates issues while walking a document; `at` builds child paths.
#[derive(Debug, Default)]
pub struct Issues(Vec<Issue>);

impl Issues {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(Issue {
            path: path.into(),
            reason: reason.into(),
        });
    }

    pub fn extend(&mut self, other: impl IntoIterator<Item = Issue>) {
        self.0.extend(other);
    }

    pub fn into_vec(self) -> Vec<Issue> {
        self.0
    }

    /// `Ok(value)` when nothing was found, else every issue.
    pub fn finish<T>(self, value: T) -> Result<T, Invalid> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(Invalid(self.0))
        }
    }
}

/// `parent.child`, or `child` at the root.
pub fn field(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// `parent[index]`.
pub fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}
