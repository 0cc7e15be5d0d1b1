//! What every binary does around its `run` function: wait for SIGINT/SIGTERM,
//! and end with a one-line error and a non-zero exit code.

use std::fmt::Display;
use std::process::ExitCode;

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}

/// Exit code 0, or 1 after printing `<binary>: <error>` on one line.
pub fn exit_code<E: Display>(binary: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = e.to_string().replace('\n', " ");
            tracing::error!(error = %line, "exiting");
            eprintln!("{binary}: {line}");
            ExitCode::FAILURE
        }
    }
}
