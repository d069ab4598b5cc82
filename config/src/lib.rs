//! Zync's operator configuration.
//!
//! One typed [`Config`] with a default for every key. It is assembled from
//! three layers, later ones winning: the built-in defaults, an optional TOML
//! file, and environment variables named `ZYNC_<SECTION>_<KEY>` (for example
//! `ZYNC_HTTP_BIND` or `ZYNC_LIMITS_MAX_UPLOAD_BYTES`). Every problem is
//! reported as a [`ConfigError`] that names the key and where its value came
//! from, so an operator can fix it without reading code.
//!
//! `config/zync.example.toml` documents every key; a test keeps it in step
//! with [`Config::default`].

mod error;
mod layers;
mod sections;

pub use error::{ConfigError, Source};
pub use sections::{
    AuthConfig, ClusterConfig, Config, DatabaseConfig, HttpConfig, LimitsConfig, LogConfig,
    MetricsConfig, SfuConfig, WebSocketConfig, parse_origin, valid_node_id,
};

use std::path::Path;

impl Config {
    /// Loads the configuration from the optional file at `path` and the
    /// process environment, then validates it.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`], with the environment given explicitly (tests use
    /// this so they never depend on the real environment).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                Some((path.display().to_string(), text))
            }
            None => None,
        };
        build(file.as_ref().map(|(p, t)| (p.as_str(), t.as_str())), env)
    }

    /// Parses a TOML document with no environment layer (handy in tests).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        build(Some(("<string>", text)), std::iter::empty())
    }
}

/// Merges the layers, deserializes them into a [`Config`] and validates it.
fn build(
    file: Option<(&str, &str)>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let merged = layers::merge(file, env)?;
    let config: Config =
        serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
            ConfigError::Invalid {
                key: e.path().to_string(),
                reason: e.inner().to_string(),
            }
        })?;
    config.validate()?;
    Ok(config)
}
