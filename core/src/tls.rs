//! Encrypted connections to databases: one set of settings, read from the URL
//! the way each engine's own clients read it, and handed to whichever client
//! library makes the connection (tokio-postgres, the replication connection,
//! mysql_async).
//!
//! PostgreSQL URLs take libpq's parameters, MySQL/MariaDB URLs the MySQL
//! client's, so an operator's existing connection strings work unchanged:
//!
//! | PostgreSQL    | MySQL/MariaDB     | meaning                                        |
//! |---------------|-------------------|------------------------------------------------|
//! | `sslmode`     | `ssl-mode`        | see [`TlsMode`]                                |
//! | `sslrootcert` | `ssl-ca`          | PEM file of the CA(s) to trust                 |
//! | `sslcert`     | `ssl-cert`        | PEM client certificate (chain)                 |
//! | `sslkey`      | `ssl-key`         | PEM private key of the client certificate      |
//!
//! The default is [`TlsMode::Prefer`], as in libpq and the MySQL client: TLS
//! whenever the server offers it. As in libpq, `require` with a CA file given
//! verifies the chain (`verify-ca`).

use std::fmt;
use std::path::PathBuf;

use url::Url;

/// How much TLS a connection insists on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Never encrypt.
    Disable,
    /// Encrypt when the server offers TLS, without verifying it; plain otherwise.
    #[default]
    Prefer,
    /// Encrypt or fail; the certificate is not verified (unless a CA is given).
    Require,
    /// Encrypt, and the server's certificate must chain to the CA.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl TlsMode {
    /// Whether the server's certificate chain is checked.
    pub fn verifies(self) -> bool {
        matches!(self, TlsMode::VerifyCa | TlsMode::VerifyFull)
    }
}

/// Which engine's parameter names a URL uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
}

impl Dialect {
    /// The URL parameters: mode, CA, certificate, key.
    fn params(self) -> [&'static str; 4] {
        match self {
            Dialect::Postgres => ["sslmode", "sslrootcert", "sslcert", "sslkey"],
            Dialect::Mysql => ["ssl-mode", "ssl-ca", "ssl-cert", "ssl-key"],
        }
    }

    fn modes(self) -> [(&'static str, TlsMode); 5] {
        match self {
            Dialect::Postgres => [
                ("disable", TlsMode::Disable),
                ("prefer", TlsMode::Prefer),
                ("require", TlsMode::Require),
                ("verify-ca", TlsMode::VerifyCa),
                ("verify-full", TlsMode::VerifyFull),
            ],
            Dialect::Mysql => [
                ("DISABLED", TlsMode::Disable),
                ("PREFERRED", TlsMode::Prefer),
                ("REQUIRED", TlsMode::Require),
                ("VERIFY_CA", TlsMode::VerifyCa),
                ("VERIFY_IDENTITY", TlsMode::VerifyFull),
            ],
        }
    }

    fn mode(self, value: &str) -> Option<TlsMode> {
        let value = value.replace('_', "-");
        self.modes()
            .into_iter()
            .find(|(name, _)| name.replace('_', "-").eq_ignore_ascii_case(&value))
            .map(|(_, mode)| mode)
    }
}

/// TLS settings that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("{param}={value} is not a TLS mode; use one of {expected}")]
    BadMode {
        param: &'static str,
        value: String,
        expected: String,
    },
    #[error("{0}: the client certificate and its key go together; give both")]
    HalfIdentity(String),
    #[error("{mode} needs a CA file to verify against: add {param}=/path/to/ca.pem")]
    NoCa { mode: &'static str, param: &'static str },
    #[error("TLS file {path} cannot be read: {reason}")]
    Unreadable { path: PathBuf, reason: String },
}

/// A connection's TLS settings.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    pub mode: TlsMode,
    /// Trusted CA certificates (PEM).
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) and its private key (PEM), for servers that
    /// authenticate clients by certificate.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("mode", &self.mode)
            .field("ca", &self.ca)
            .field("client_certificate", &self.identity.as_ref().map(|(cert, _)| cert))
            .finish()
    }
}

impl TlsOptions {
    /// Takes the TLS parameters of `dialect` out of `url` (the client library
    /// would refuse or misread them) and returns them, checked: the files exist
    /// and the combination makes sense.
    pub fn take(url: &mut Url, dialect: Dialect) -> Result<TlsOptions, TlsError> {
        let names = dialect.params();
        // MySQL's option names are also written with underscores (ssl_mode).
        let which = |key: &str| names.iter().position(|n| n.replace('-', "_") == key.replace('-', "_"));
        let mut found: [Option<String>; 4] = Default::default();
        let mut kept = Vec::new();
        for (key, value) in url.query_pairs() {
            match which(&key) {
                Some(i) => found[i] = Some(value.into_owned()),
                None => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        if found.iter().all(Option::is_none) {
            return Ok(TlsOptions::default());
        }
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        let [mode, ca, cert, key] = found;
        let mode = match mode {
            None => TlsMode::default(),
            Some(value) => dialect.mode(&value).ok_or_else(|| TlsError::BadMode {
                param: names[0],
                expected: dialect.modes().map(|(n, _)| n).join(", "),
                value,
            })?,
        };
        let file = |p: Option<String>| -> Result<Option<PathBuf>, TlsError> {
            let Some(p) = p else { return Ok(None) };
            let path = PathBuf::from(p);
            std::fs::metadata(&path).map_err(|e| TlsError::Unreadable {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            Ok(Some(path))
        };
        let ca = file(ca)?;
        let identity = match (file(cert)?, file(key)?) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(TlsError::HalfIdentity(format!("{} and {}", names[2], names[3]))),
        };
        let mode = match mode {
            // libpq: require with a root certificate verifies the chain.
            TlsMode::Require if ca.is_some() && dialect == Dialect::Postgres => TlsMode::VerifyCa,
            m => m,
        };
        if mode.verifies() && ca.is_none() {
            let name = dialect
                .modes()
                .into_iter()
                .find(|(_, m)| *m == mode)
                .map_or("", |(n, _)| n);
            return Err(TlsError::NoCa {
                mode: name,
                param: names[1],
            });
        }
        Ok(TlsOptions { mode, ca, identity })
    }
}

/// Makes rustls usable by every client that builds its configuration with the
/// process-wide default (mysql_async, the MongoDB driver): Ferry links
/// two crypto back-ends through its dependencies, and rustls then wants one named.
pub fn install_crypto_provider() {
    // An error only says one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(url: &str, dialect: Dialect) -> (Result<TlsOptions, TlsError>, String) {
        let mut url = Url::parse(url).unwrap();
        let tls = TlsOptions::take(&mut url, dialect);
        (tls, url.to_string())
    }

    #[test]
    fn parameters_are_taken_out_of_the_url_and_others_kept() {
        let ca = std::env::temp_dir();
        let ca = ca.to_str().unwrap();
        let (tls, rest) = take(
            &format!("postgres://u:p@h/db?application_name=x&sslmode=verify-full&sslrootcert={ca}"),
            Dialect::Postgres,
        );
        let tls = tls.unwrap();
        assert_eq!(tls.mode, TlsMode::VerifyFull);
        assert_eq!(tls.ca.as_deref(), Some(std::path::Path::new(ca)));
        assert_eq!(rest, "postgres://u:p@h/db?application_name=x");
        let (tls, rest) = take("mysql://u@h:3306/db?ssl_mode=verify_identity&ssl-ca=/", Dialect::Mysql);
        assert_eq!(tls.unwrap().mode, TlsMode::VerifyFull);
        assert_eq!(rest, "mysql://u@h:3306/db");
        let (tls, _) = take("mysql://u@h/db?ssl-mode=disabled", Dialect::Mysql);
        assert_eq!(tls.unwrap().mode, TlsMode::Disable);
    }

    #[test]
    fn the_default_is_prefer_and_libpq_require_with_a_ca_verifies() {
        let (tls, rest) = take("postgres://h/db", Dialect::Postgres);
        assert_eq!(tls.unwrap(), TlsOptions::default());
        assert_eq!(TlsOptions::default().mode, TlsMode::Prefer);
        assert_eq!(rest, "postgres://h/db");
        let (tls, _) = take("postgres://h/db?sslmode=require&sslrootcert=/", Dialect::Postgres);
        assert_eq!(tls.unwrap().mode, TlsMode::VerifyCa);
    }

    #[test]
    fn bad_settings_say_what_to_fix() {
        let (tls, _) = take("postgres://h/db?sslmode=verify", Dialect::Postgres);
        assert_eq!(
            tls.unwrap_err().to_string(),
            "sslmode=verify is not a TLS mode; use one of disable, prefer, require, verify-ca, verify-full"
        );
        let (tls, _) = take("postgres://h/db?sslmode=verify-full", Dialect::Postgres);
        assert_eq!(
            tls.unwrap_err().to_string(),
            "verify-full needs a CA file to verify against: add sslrootcert=/path/to/ca.pem"
        );
        let (tls, _) = take("mysql://h/db?ssl-cert=/", Dialect::Mysql);
        assert!(matches!(tls, Err(TlsError::HalfIdentity(_))));
        let (tls, _) = take("mysql://h/db?ssl-ca=/no/such/ca.pem", Dialect::Mysql);
        assert!(tls
            .unwrap_err()
            .to_string()
            .starts_with("TLS file /no/such/ca.pem cannot be read"));
    }
}
