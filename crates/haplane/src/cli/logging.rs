//! Where the logs go and how they look: text for people (colour only on a terminal), JSON
//! lines for journald and log shippers.

use std::io::IsTerminal;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; ANSI colour only when stderr is a terminal.
    Text,
    /// One JSON object per line (timestamp, level, target, fields, spans).
    Json,
}

/// Installs the global subscriber. A filter that does not parse falls back to `info` and
/// says so, rather than silently logging something else.
pub fn init(filter: &str, format: LogFormat) {
    let (env_filter, bad_filter) = match tracing_subscriber::EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (tracing_subscriber::EnvFilter::new("info"), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    if let Some(e) = bad_filter {
        tracing::warn!("--log {filter:?} is not a valid filter ({e}); logging at info");
    }
}
