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

/// Read and [`parse_bytes`] the file at `path`.
pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path).map_err(|error| ConfigError::Io {
        path: path.to_owned(),
        error,
    })?;
    parse_bytes(bytes, &path.display().to_string())
}

/// [`parse`] the bytes of a config file, which must be UTF-8: the first
/// byte that is not is reported like any other mistake, with its line,
/// column and key.
pub fn parse_bytes(bytes: Vec<u8>, origin: &str) -> Result<Config, ConfigError> {
    let text = String::from_utf8(bytes).map_err(|e| not_utf8(origin, &e))?;
    parse(&text, origin)
}

/// Locates the first invalid byte: line and column count the valid text
/// before it; the key is read from the text with the invalid bytes
/// replaced (U+FFFD), which is TOML again when they sit inside a string.
fn not_utf8(origin: &str, e: &std::string::FromUtf8Error) -> ConfigError {
    let bytes = e.as_bytes();
    let valid = e.utf8_error().valid_up_to();
    let prefix = std::str::from_utf8(&bytes[..valid]).expect("valid up to here");
    let (line, column) = locate::line_col(prefix, valid);
    let lossy = String::from_utf8_lossy(bytes);
    let mut key = locate::key_path(&lossy, valid);
    if key.is_empty() {
        // In a comment or between entries, which no value's span covers.
        key = locate::key_path_by_headers(&lossy, valid);
    }
    if key.contains(char::REPLACEMENT_CHARACTER) {
        // The invalid bytes are in the key itself: name its table.
        key = key
            .rsplit_once('.')
            .map_or("", |(table, _)| table)
            .to_owned();
    }
    let len = e.utf8_error().error_len().unwrap_or(bytes.len() - valid);
    let shown: Vec<String> = bytes[valid..valid + len]
        .iter()
        .map(|b| format!("{b:#04x}"))
        .collect();
    let shown = shown.join(" ");
    let message = match (e.utf8_error().error_len(), len) {
        (Some(_), 1) => format!("byte {shown} is not UTF-8"),
        (Some(_), _) => format!("bytes {shown} are not UTF-8"),
        (None, _) => format!("the file ends inside a UTF-8 character ({shown})"),
    };
    ConfigError::Invalid(vec![Diagnostic {
        origin: origin.to_owned(),
        line,
        column,
        key,
        message: format!("{message}: the file must be UTF-8 text"),
    }])
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
    let mut message = e.message().trim_end().to_owned();
    // The TOML parser says nothing about some characters it refuses (a
    // control character in a comment, found by the config fuzzer): name
    // the character rather than print an empty reason.
    if message.is_empty() {
        message = match text.get(offset..).and_then(|rest| rest.chars().next()) {
            Some(c) if c.is_control() => format!(
                "control character U+{:04X} is not allowed in TOML",
                u32::from(c)
            ),
            Some(c) => format!("{c:?} is not valid TOML here"),
            None => "the file ends where TOML expects more".to_owned(),
        };
    }
    ConfigError::Invalid(vec![Diagnostic {
        origin: origin.to_owned(),
        line,
        column,
        key,
        message,
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
