//! Logging: a `tracing` subscriber writing to stderr, as text or JSON, filtered by level.

use clap::ValueEnum;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `tracing`'s own human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A bare word that is not a level: `EnvFilter` would take it for a target name and
    /// silently log nothing.
    #[error("unknown level {0:?} (expected one of {levels})", levels = LEVELS.join(", "))]
    UnknownLevel(String),
    /// A filter directive `tracing` cannot parse.
    #[error("invalid filter directive")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Installs the global subscriber: `level` is a level or a `tracing` filter directive.
pub fn init(level: &str, format: LogFormat) -> Result<(), TelemetryError> {
    if !level.contains('=') && !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
        return Err(TelemetryError::UnknownLevel(level.to_string()));
    }
    let filter = tracing_subscriber::EnvFilter::try_new(level)?;
    // Colours only on a terminal: journald and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
