//! Logging set-up shared by every binary: human-readable lines by default, one
//! JSON object per line with `--log-format json`, level from `FERRY_LOG` (or
//! `RUST_LOG`), the binary's default when neither is set: `info` for the
//! capture, apply and registry services, `warn` for the `ferry` tool, whose
//! own output is what the operator reads (its `migrate` runs a capture and
//! applies in process: their warnings and errors still show).

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}; use human or json")),
        }
    }
}

/// Installs the global subscriber, at level `default` unless `FERRY_LOG` or
/// `RUST_LOG` says otherwise. Call once, first thing in `main`.
pub fn init_logging(format: LogFormat, default: &str) {
    let filter = std::env::var("FERRY_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
