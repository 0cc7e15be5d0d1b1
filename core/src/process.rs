//! What every binary does around its `run` function: wait for SIGINT/SIGTERM,
//! and end with a one-line error and a non-zero exit code.

use std::fmt::Display;
use std::process::ExitCode;

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM. The handlers are
/// installed when this is called, not when the future is first polled: a
/// signal that arrives while the process is still starting (validating its
/// source, say) is kept and ends it cleanly once it gets there, instead of
/// killing it outright.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    async move {
        async fn wait(s: Option<&mut tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = wait(interrupt.as_mut()) => {}
            () = wait(term.as_mut()) => {}
        }
        tracing::info!("shutdown requested");
    }
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
