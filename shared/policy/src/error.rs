//! Errors with the exact path of the offending element.

use std::fmt;

/// One problem found in a policy document, located by its path
/// (`policies[2].string_attribute.values`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Path of the offending element, in the same notation as
    /// `serde_path_to_error` (`a.b[3].c`), `.` for the document root.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Issue {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn join(issues: &[Issue]) -> String {
    issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Why a policy document could not be loaded or compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not valid YAML/JSON or does not have the expected shape
    /// (wrong type, unknown field or policy type, missing field).
    #[error("{path}: {message}")]
    Parse {
        /// Path of the element that failed to parse.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// The document parsed but is semantically invalid. Every problem found
    /// is listed (in document order).
    #[error("{}", join(.0))]
    Invalid(Vec<Issue>),
}

impl PolicyError {
    /// All problems as [`Issue`]s (a parse error yields a single one).
    pub fn issues(&self) -> Vec<Issue> {
        match self {
            PolicyError::Parse { path, message } => vec![Issue::new(path.clone(), message.clone())],
            PolicyError::Invalid(v) => v.clone(),
        }
    }

    pub(crate) fn parse(path: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyError::Parse {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn from_path_error<E: fmt::Display>(err: serde_path_to_error::Error<E>, prefix: &str) -> Self {
        let inner_path = err.path().to_string();
        let mut message = err.into_inner().to_string();
        // serde_yaml prefixes its messages with its own (shorter) path.
        if let Some((head, rest)) = message.split_once(": ") {
            if !head.is_empty() && !head.contains(' ') && (head == "." || inner_path.starts_with(head)) {
                message = rest.to_string();
            }
        }
        let path = if prefix.is_empty() {
            inner_path
        } else if inner_path == "." {
            prefix.to_string()
        } else if inner_path.starts_with('[') {
            format!("{prefix}{inner_path}")
        } else {
            format!("{prefix}.{inner_path}")
        };
        PolicyError::parse(path, message)
    }
}
