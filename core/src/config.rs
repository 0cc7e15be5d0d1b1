//! Configuration shared by every binary: a TOML file, overridden by `FERRY_*`
//! environment variables, overridden by flags.
//!
//! Each binary declares its flags with clap, every flag optional and tied to
//! its environment variable (`#[arg(long, env = "FERRY_BROKERS")]`), so clap
//! already resolves flag-over-environment. [`load`] then lays those values over
//! the file and deserialises the binary's config struct, whose
//! `#[serde(deny_unknown_fields)]` turns a misspelt key in the file into a
//! one-line error instead of a silently ignored setting.
//!
//! Secrets ([`Secret`], and passwords inside [`SecretUrl`]) print as `***` in
//! `Debug` and `Display`, so a config struct can be logged whole.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

/// A configuration that cannot be used, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: cannot be read: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// Loads a config: defaults of `T` < the TOML file at `file` < `overrides`
/// (flags and environment, as clap parsed them; `None` fields are skipped by
/// giving them `#[serde(skip_serializing_if = "Option::is_none")]`).
pub fn load<T: DeserializeOwned>(file: Option<&Path>, overrides: &impl Serialize) -> Result<T, ConfigError> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        figment = figment.merge(Toml::string(&text));
    }
    figment = figment.merge(Serialized::defaults(overrides));
    figment.extract().map_err(|e| {
        let mut line = e.to_string();
        if let Some(path) = file {
            line = format!("config file {}: {line}", path.display());
        }
        ConfigError::Invalid(line)
    })
}

/// A secret string: a password or token. Never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// A connection URL that may carry a password (`postgres://u:p@host/db`). Prints
/// with the password replaced by `***`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretUrl(Url);

impl SecretUrl {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        Url::parse(s).map(SecretUrl).map_err(|e| {
            // The text may hold a password; say what is wrong without echoing it.
            ConfigError::Invalid(format!(
                "not a valid URL ({e}); expected e.g. postgres://user:password@127.0.0.1:5432/db"
            ))
        })
    }

    /// The URL with its password, for handing to a client library.
    pub fn expose(&self) -> &Url {
        &self.0
    }

    /// The URL without its password, safe to print.
    pub fn redacted(&self) -> Url {
        let mut url = self.0.clone();
        if url.password().is_some() {
            // Cannot fail: the URL has a host, or it could not have had a password.
            let _ = url.set_password(Some("***"));
        }
        url
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted().as_str())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.redacted().as_str())
    }
}

impl TryFrom<String> for SecretUrl {
    type Error = ConfigError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        SecretUrl::parse(&s)
    }
}

impl From<SecretUrl> for String {
    fn from(u: SecretUrl) -> String {
        u.0.into()
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecretUrl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        #[serde(default = "default_brokers")]
        brokers: String,
        source: Option<SecretUrl>,
        password: Option<Secret>,
        #[serde(default)]
        tables: Vec<String>,
    }

    fn default_brokers() -> String {
        "127.0.0.1:9092".into()
    }

    #[derive(Serialize, Default)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        brokers: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        password: Option<Secret>,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn flags_override_file_override_defaults() {
        let none = Flags::default();
        let c: Conf = load(None, &none).unwrap();
        assert_eq!(c.brokers, "127.0.0.1:9092");
        let f = file("brokers = \"a:1\"\ntables = [\"public.*\"]\nsource = \"postgres://u:hunter2@h/db\"\n");
        let c: Conf = load(Some(f.path()), &none).unwrap();
        assert_eq!(c.brokers, "a:1");
        assert_eq!(c.tables, vec!["public.*"]);
        let flags = Flags {
            brokers: Some("b:2".into()),
            password: Some(Secret::new("s3cret")),
        };
        let c: Conf = load(Some(f.path()), &flags).unwrap();
        assert_eq!(c.brokers, "b:2");
        assert_eq!(c.password.as_ref().unwrap().expose(), "s3cret");
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("postgres://u:***@h/db"), "{printed}");
    }

    #[test]
    fn bad_files_give_one_line_errors() {
        let f = file("brokrs = \"a:1\"\n");
        let err = load::<Conf>(Some(f.path()), &Flags::default()).unwrap_err().to_string();
        assert!(
            err.contains("brokrs") && err.contains(&f.path().display().to_string()),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        let f = file("brokers = [1, 2");
        assert!(load::<Conf>(Some(f.path()), &Flags::default()).is_err());
        let missing = Path::new("/nonexistent/ferry.toml");
        let err = load::<Conf>(Some(missing), &Flags::default()).unwrap_err().to_string();
        assert!(
            err.starts_with("config file /nonexistent/ferry.toml: cannot be read"),
            "{err}"
        );
    }

    #[test]
    fn bad_urls_do_not_echo_the_password() {
        let err = SecretUrl::parse("postgres://u:hunter2@[::1").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let f = file("source = \"not a url hunter2\"\n");
        let err = load::<Conf>(Some(f.path()), &Flags::default()).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let plain = SecretUrl::parse("mysql://root@127.0.0.1:3306").unwrap();
        assert_eq!(plain.to_string(), "mysql://root@127.0.0.1:3306");
        assert_eq!(Secret::new("x").to_string(), "***");
    }
}
