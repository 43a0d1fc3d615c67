//! Configuration: TOML text in, a validated [`Config`] out.
//!
//! Two passes: [`raw`] mirrors the file with serde (unknown keys rejected),
//! then validation checks ranges and cross references and fills defaults.
//! `coexist check`, start-up and reload all go through [`parse`].

mod error;
mod locate;
mod model;
pub mod raw;
mod validate;

#[cfg(test)]
mod tests;

pub use error::{ConfigError, Diagnostic};
pub use model::*;

/// Parse and validate config `text`; `origin` (usually the file name) starts
/// every error message.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| syntax_error(text, origin, &e))?;
    validate::validate(raw, text, origin).map_err(ConfigError::Invalid)
}

/// Read and [`parse`] the file at `path`.
pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
        path: path.to_owned(),
        error,
    })?;
    parse(&text, &path.display().to_string())
}

/// A TOML syntax or serde shape error, located like validation errors.
fn syntax_error(text: &str, origin: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start);
    let (line, column) = locate::line_col(text, offset);
    let mut key = locate::key_path(text, offset);
    // serde reports a missing key at its table; name the key itself.
    if let Some(missing) = backticked(e.message(), "missing field ") {
        key = if key.is_empty() {
            missing.to_owned()
        } else {
            format!("{key}.{missing}")
        };
    }
    ConfigError::Invalid(vec![Diagnostic {
        origin: origin.to_owned(),
        line,
        column,
        key,
        message: e.message().trim_end().to_owned(),
    }])
}

/// `missing field `name`` with prefix "missing field " → `name`.
fn backticked<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    message
        .strip_prefix(prefix)?
        .strip_prefix('`')?
        .split('`')
        .next()
}
