//! The command line: flags shared by every command, and the commands.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Source, DEFAULT_CONFIG_PATH};
use crate::telemetry::LogFormat;

/// `hss-exporter [FLAGS] [COMMAND]`.
#[derive(Debug, Parser)]
#[command(
    name = "hss-exporter",
    version,
    about = "Prometheus exporter for Huawei Cloud HSS image-registry access statistics"
)]
pub struct Cli {
    /// Configuration file (YAML).
    #[arg(
        long = "config.file",
        visible_alias = "config",
        global = true,
        value_name = "FILE",
        default_value = DEFAULT_CONFIG_PATH
    )]
    pub config: PathBuf,
    /// Address to serve on; repeat it to serve on several. Overrides `web.listen_address`.
    #[arg(long = "web.listen-address", global = true, value_name = "ADDR")]
    pub listen_addresses: Vec<String>,
    /// Path under which the metrics are served.
    #[arg(
        long = "web.telemetry-path",
        global = true,
        value_name = "PATH",
        default_value = "/metrics"
    )]
    pub telemetry_path: String,
    /// Log level: error, warn, info, debug, trace (or a tracing filter directive).
    #[arg(
        long = "log.level",
        global = true,
        default_value = "info",
        value_name = "LEVEL"
    )]
    pub log_level: String,
    /// Log line format: logfmt (the default when stderr is not a terminal), json, or text
    /// (the default on a terminal).
    #[arg(long = "log.format", global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// TLS and basic auth for the web endpoints, in the Prometheus exporter-toolkit format.
    #[arg(long = "web.config.file", global = true, value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// Serve POST /-/reload, which reloads the configuration like SIGHUP.
    #[arg(long = "web.enable-lifecycle", global = true)]
    pub enable_lifecycle: bool,
    /// What to do; without one, run the exporter.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands besides running the exporter.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum Command {
    /// Validate the configuration, print the targets and the minimum interval per account.
    CheckConfig {
        /// Also discover the projects of accounts with `discover:` (one IAM call each) and
        /// print what was found.
        #[arg(long)]
        discover: bool,
    },
    /// Poll every target once (within the rate limits), print the metrics, exit 1 if any failed.
    Once,
    /// Run against a built-in simulated HSS API; no cloud account needed.
    Demo,
}

impl Cli {
    /// Where the configuration is read from, now and at every reload.
    pub fn source(&self) -> Source {
        Source {
            path: self.config.clone(),
            listen_addresses: self.listen_addresses.clone(),
        }
    }

    /// `--log.format`, or the default for where stderr goes.
    pub fn log_format(&self) -> LogFormat {
        self.log_format
            .unwrap_or_else(LogFormat::default_for_stderr)
    }
}
