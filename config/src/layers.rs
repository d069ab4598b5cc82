//! Merging the three layers (defaults, file, environment) into one TOML table.
//!
//! The defaults are serialized to a table first: that table is the schema.
//! Every key from the file or the environment must exist there and have the
//! same kind of value, so typos and type mistakes are caught with the key's
//! name before deserialization.

use crate::{Config, ConfigError, Source};
use toml::{Table, Value};

/// Prefix of every environment variable Zync reads.
const ENV_PREFIX: &str = "ZYNC_";

/// Builds the merged table: defaults, overlaid by the file, overlaid by `env`.
pub(crate) fn merge(
    file: Option<(&str, &str)>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Table, ConfigError> {
    let mut merged = Table::try_from(Config::default()).map_err(|e| ConfigError::Invalid {
        key: "<defaults>".into(),
        reason: e.to_string(),
    })?;

    if let Some((path, text)) = file {
        let table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: path.to_string(),
                reason: e.to_string().trim_end().to_string(),
            })?;
        overlay_file(&mut merged, table, path)?;
    }

    overlay_env(&mut merged, env)?;
    Ok(merged)
}

fn overlay_file(merged: &mut Table, file: Table, path: &str) -> Result<(), ConfigError> {
    let source = || Source::File(path.to_string());
    for (section, value) in file {
        let Some(Value::Table(target)) = merged.get_mut(&section) else {
            return Err(ConfigError::UnknownKey {
                key: section,
                origin: source(),
            });
        };
        let Value::Table(entries) = value else {
            return Err(ConfigError::Type {
                key: section,
                origin: source(),
                expected: "a table of keys",
                got: value.type_str().to_string(),
            });
        };
        for (key, value) in entries {
            let dotted = format!("{section}.{key}");
            let Some(default) = target.get(&key) else {
                return Err(ConfigError::UnknownKey {
                    key: dotted,
                    origin: source(),
                });
            };
            let value = coerce_like(default, value).map_err(|got| ConfigError::Type {
                key: dotted,
                origin: source(),
                expected: kind_name(default),
                got,
            })?;
            target.insert(key, value);
        }
    }
    Ok(())
}

fn overlay_env(
    merged: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        // Sections have no underscore in their names, so the first `_` splits
        // section from key (`LIMITS_MAX_UPLOAD_BYTES` → limits.max_upload_bytes).
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        // Variables for other tools that merely share the prefix are ignored;
        // a known section with an unknown key is almost surely a typo.
        let Some(Value::Table(target)) = merged.get_mut(section) else {
            continue;
        };
        let dotted = format!("{section}.{key}");
        let Some(default) = target.get(key) else {
            return Err(ConfigError::UnknownKey {
                key: dotted,
                origin: Source::Env(var),
            });
        };
        let value = parse_env_like(default, &raw).map_err(|got| ConfigError::Type {
            key: dotted.clone(),
            origin: Source::Env(var.clone()),
            expected: kind_name(default),
            got,
        })?;
        target.insert(key.to_string(), value);
    }
    Ok(())
}

/// Accepts `value` if it has the kind of `default` (an integer is also a float).
fn coerce_like(default: &Value, value: Value) -> Result<Value, String> {
    match (default, value) {
        (Value::Float(_), Value::Integer(i)) => Ok(Value::Float(i as f64)),
        (d, v) if std::mem::discriminant(d) == std::mem::discriminant(&v) => Ok(v),
        (_, v) => Err(describe(&v)),
    }
}

/// Parses an environment string into the kind of `default`.
fn parse_env_like(default: &Value, raw: &str) -> Result<Value, String> {
    let bad = || format!("{raw:?}");
    match default {
        Value::String(_) => Ok(Value::String(raw.to_string())),
        Value::Integer(_) => raw.trim().parse().map(Value::Integer).map_err(|_| bad()),
        Value::Float(_) => raw.trim().parse().map(Value::Float).map_err(|_| bad()),
        Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err(bad()),
        },
        Value::Array(_) => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )),
        Value::Datetime(_) | Value::Table(_) => Err(bad()),
    }
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Array(_) => "a list",
        Value::Datetime(_) => "a date",
        Value::Table(_) => "a table",
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Table(_) | Value::Array(_) => value.type_str().to_string(),
        other => format!("{} {}", other.type_str(), other),
    }
}
