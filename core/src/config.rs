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
//! `Debug` and `Display`, so a config struct can be logged whole. A password
//! may be kept out of the URL, and so out of the process list and the config
//! file: in an environment variable or in a file ([`password`]), the way
//! container secrets are mounted.

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
///
/// The file is parsed as TOML first, so that a syntax error is one line with
/// its line and column rather than the TOML parser's drawing of the spot.
pub fn load<T: DeserializeOwned>(file: Option<&Path>, overrides: &impl Serialize) -> Result<T, ConfigError> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if let Err(e) = toml::from_str::<toml::Table>(&text) {
            let at = e.span().map_or_else(String::new, |span| {
                let before = text.get(..span.start).unwrap_or(&text);
                let line = before.rsplit('\n').next().unwrap_or_default();
                let number = before.matches('\n').count() + 1;
                format!(" at line {number}, column {}", line.chars().count() + 1)
            });
            return Err(invalid(
                file,
                format!("not valid TOML{at}: {}", e.message().trim().replace('\n', "; ")),
            ));
        }
        figment = figment.merge(Toml::string(&text));
    }
    figment = figment.merge(Serialized::defaults(overrides));
    figment.extract().map_err(|e| invalid(file, describe(e)))
}

/// Deserialises `keys`, the ones a binary's own struct `T` takes beside the
/// shared ones [`load`] read (from the file at `file`, if any), with errors
/// in the same words.
pub fn own_keys<T: DeserializeOwned>(
    file: Option<&Path>,
    keys: serde_json::Map<String, serde_json::Value>,
) -> Result<T, ConfigError> {
    Figment::from(Serialized::defaults(keys))
        .extract()
        .map_err(|e| invalid(file, describe(e)))
}

/// A key no binary's struct takes (`deny_unknown_fields` does not work
/// beside `flatten`, so a binary checks what is left over itself).
pub fn unknown_key(file: Option<&Path>, key: &str) -> ConfigError {
    invalid(file, unknown(key))
}

fn unknown(key: &str) -> String {
    format!("unknown setting {key:?}: the config keys are the long flag names with _ for - (see --help)")
}

/// `line`, naming the file when there is one.
fn invalid(file: Option<&Path>, line: String) -> ConfigError {
    ConfigError::Invalid(match file {
        Some(path) => format!("config file {}: {line}", path.display()),
        None => line,
    })
}

/// A figment error as `key: problem`, without figment's profile and source
/// names (`for key "default.x" in TOML source string`).
fn describe(e: figment::Error) -> String {
    use figment::error::Kind;
    let key = e.path.join(".");
    let problem = match &e.kind {
        Kind::UnknownField(field, _) => return unknown(field),
        kind => kind.to_string(),
    };
    if key.is_empty() {
        problem
    } else {
        format!("{key}: {problem}")
    }
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

/// Passwords given apart from the URLs they are for, and the files that
/// secure the registry connection, shared by the capture and apply binaries
/// (flags, `FERRY_*` variables, config keys).
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
pub struct Credentials {
    /// The database's password, instead of in its URL (a flag shows in the
    /// process list: prefer the variable or --password-file).
    #[arg(long, env = "FERRY_PASSWORD", hide_env_values = true, hide = true)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// File holding the database's password, instead of in its URL.
    #[arg(long, env = "FERRY_PASSWORD_FILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The registry's basic-auth password, instead of in --registry's URL.
    #[arg(long, env = "FERRY_REGISTRY_PASSWORD", hide_env_values = true, hide = true)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_password: Option<Secret>,
    /// File holding the registry's basic-auth password.
    #[arg(long, env = "FERRY_REGISTRY_PASSWORD_FILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_password_file: Option<PathBuf>,
    /// PEM file of the CA(s) that sign an https registry's certificate [default: the system's].
    #[arg(long, env = "FERRY_REGISTRY_CA")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_ca: Option<PathBuf>,
    /// PEM client certificate for a registry that asks for one (with --registry-key).
    #[arg(long, env = "FERRY_REGISTRY_CERT")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_cert: Option<PathBuf>,
    /// PKCS#8 PEM private key of --registry-cert.
    #[arg(long, env = "FERRY_REGISTRY_KEY")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_key: Option<PathBuf>,
}

impl Credentials {
    /// The database's password, if given apart from its URL.
    pub fn database(&self) -> Result<Option<Secret>, ConfigError> {
        password(self.password.clone(), self.password_file.as_deref(), "--password-file")
    }

    /// How to reach `registry`: with the password given apart from it if one
    /// is, and the TLS files.
    pub fn registry(&self, registry: SecretUrl) -> Result<RegistryAccess, ConfigError> {
        let given = password(
            self.registry_password.clone(),
            self.registry_password_file.as_deref(),
            "--registry-password-file",
        )?;
        let identity = match (&self.registry_cert, &self.registry_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "--registry-cert and --registry-key go together; give both".into(),
                ))
            }
        };
        Ok(RegistryAccess {
            url: registry.with_password(given.as_ref())?,
            ca: self.registry_ca.clone(),
            identity,
        })
    }
}

/// How to reach the schema registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAccess {
    /// With basic-auth user and password, if the registry wants them.
    pub url: SecretUrl,
    /// CA file for an https registry, instead of the system's trust store.
    pub ca: Option<PathBuf>,
    /// Client certificate and PKCS#8 key, both PEM.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl RegistryAccess {
    /// `url`, with no TLS files of its own.
    pub fn new(url: SecretUrl) -> Self {
        Self {
            url,
            ca: None,
            identity: None,
        }
    }
}

/// The password given apart from its URL, if any: `value` (from the
/// environment) or the contents of `file` (`flag` names it in errors; one
/// trailing newline is not part of the password).
pub fn password(value: Option<Secret>, file: Option<&Path>, flag: &str) -> Result<Option<Secret>, ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid(format!(
            "{flag} and the password it would replace are both given; keep one"
        ))),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::Invalid(format!("{flag} {}: cannot be read: {e}", path.display())))?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            Ok(Some(Secret::new(text.strip_suffix('\r').unwrap_or(text))))
        }
        (None, None) => Ok(None),
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

    /// The URL with `password` in place of its own, if one is given.
    pub fn with_password(mut self, password: Option<&Secret>) -> Result<Self, ConfigError> {
        if let Some(password) = password {
            if self.0.username().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "{self} names no user for the password given apart from it: add user@ to the URL"
                )));
            }
            self.0
                .set_password(Some(password.expose()))
                .map_err(|()| ConfigError::Invalid(format!("{self} cannot take a password")))?;
        }
        Ok(self)
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
        let err = load::<Conf>(Some(f.path()), &Flags::default()).unwrap_err().to_string();
        assert!(
            err.contains("not valid TOML at line 1, column ") && !err.contains('\n'),
            "{err}"
        );
        let f = file("brokers = 5\n");
        let err = load::<Conf>(Some(f.path()), &Flags::default()).unwrap_err().to_string();
        assert!(
            err.ends_with("brokers: invalid type: found signed int `5`, expected a string"),
            "{err}"
        );
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

    #[test]
    fn a_password_comes_from_a_file_or_the_environment_into_the_url() {
        let f = file("p@ss:w/rd hunter2\n");
        let from_file = password(None, Some(f.path()), "--password-file").unwrap();
        assert_eq!(from_file.as_ref().map(Secret::expose), Some("p@ss:w/rd hunter2"));
        let url = SecretUrl::parse("postgres://ferry:old@127.0.0.1/db").unwrap();
        let url = url.with_password(from_file.as_ref()).unwrap();
        assert_eq!(url.expose().password(), Some("p%40ss%3Aw%2Frd%20hunter2"));
        assert_eq!(url.to_string(), "postgres://ferry:***@127.0.0.1/db");
        let env = password(Some(Secret::new("hunter2")), None, "--password-file").unwrap();
        assert_eq!(env.as_ref().map(Secret::expose), Some("hunter2"));
        assert!(password(None, None, "--password-file").unwrap().is_none());
        let both = password(Some(Secret::new("a")), Some(f.path()), "--password-file");
        assert!(both.unwrap_err().to_string().contains("keep one"));
        let missing = password(None, Some(Path::new("/nonexistent/pw")), "--password-file");
        assert!(missing
            .unwrap_err()
            .to_string()
            .starts_with("--password-file /nonexistent/pw: cannot be read"));
        let userless = SecretUrl::parse("postgres://127.0.0.1/db").unwrap();
        let err = userless.with_password(env.as_ref()).unwrap_err().to_string();
        assert!(err.contains("names no user") && !err.contains("hunter2"), "{err}");
    }
}
