//! `kairos`: one binary for every role and every admin task. Parses the
//! command line, sets up logging and the async runtime, and hands over to
//! [`kairos::cli::run`].

use clap::Parser;
use kairos::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !cli.runs_roles() {
        end_quietly_on_a_closed_pipe();
    }
    let default_filter = cli.default_log_filter();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KAIROS_LOG").unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kairos::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Lets a command whose reader has gone (`kairos jobs list | head -1`) end
/// as `cat` or `ls` do, killed by SIGPIPE with nothing on stderr. Rust
/// ignores SIGPIPE, so each write would fail with EPIPE and `println!` would
/// panic. Only for one-shot commands: a process running roles keeps SIGPIPE
/// ignored, so a closed socket (a Postgres or Redis Unix socket) is an error
/// it retries, not its death.
#[cfg(unix)]
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: restoring the default disposition of a signal, at the start
    // of main, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn end_quietly_on_a_closed_pipe() {}
