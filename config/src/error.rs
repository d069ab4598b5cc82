//! Configuration errors that name the key and where its value came from.

use std::fmt;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The TOML file at this path.
    File(String),
    /// The environment variable with this name.
    Env(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "in {path}"),
            Source::Env(var) => write!(f, "from environment variable {var}"),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Read {
        /// The path given.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {reason}")]
    Syntax {
        /// The path given.
        path: String,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// A key that Zync does not know (often a typo).
    #[error("unknown config key `{key}` {origin}")]
    UnknownKey {
        /// The dotted key, e.g. `http.bnid`.
        key: String,
        /// Where it was set.
        origin: Source,
    },
    /// A value of the wrong kind (a string where a number belongs, ...).
    #[error("config key `{key}` {origin}: expected {expected}, got {got}")]
    Type {
        /// The dotted key.
        key: String,
        /// Where it was set.
        origin: Source,
        /// What the key takes.
        expected: &'static str,
        /// What was given.
        got: String,
    },
    /// A value of the right kind that is not acceptable.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// Why it is refused.
        reason: String,
    },
}
