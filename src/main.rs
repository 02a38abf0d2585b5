//! The `hss-exporter` binary: parse the command line, load the config, set up logging, run
//! until a signal.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use hss_exporter::app::{Loader, Options};
use hss_exporter::config::{self, Settings};
use hss_exporter::web::Security;
use hss_exporter::{demo::Demo, metrics::Store, scheduler, Exporter};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "hss-exporter",
    version,
    about = "Prometheus exporter for Huawei Cloud HSS image-registry access statistics"
)]
struct Cli {
    /// Configuration file (YAML).
    #[arg(long, global = true, value_name = "FILE", default_value = config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Address to serve /metrics on; overrides web.listen_address.
    #[arg(long = "web.listen-address", global = true, value_name = "ADDR")]
    listen_address: Option<String>,
    /// Log level: error, warn, info, debug, trace (or a tracing filter directive).
    #[arg(
        long = "log.level",
        global = true,
        default_value = "info",
        value_name = "LEVEL"
    )]
    log_level: String,
    #[arg(long = "log.format", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// TLS and basic auth for the web endpoints, in the Prometheus exporter-toolkit format.
    #[arg(long = "web.config.file", global = true, value_name = "FILE")]
    web_config_file: Option<PathBuf>,
    /// Serve POST /-/reload, which reloads the configuration like SIGHUP.
    #[arg(long = "web.enable-lifecycle", global = true)]
    enable_lifecycle: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration, print the targets and the minimum interval per account.
    CheckConfig,
    /// Poll every target once (within the rate limits), print the metrics, exit 1 if any failed.
    Once,
    /// Run against a built-in simulated HSS API; no cloud account needed.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log_level, cli.log_format) {
        eprintln!("hss-exporter: --log.level: {e}");
        return ExitCode::FAILURE;
    }
    // Two worker threads are plenty to poll at API rate limits and serve a cached body; more
    // would buy nothing but a malloc arena each. TOKIO_WORKER_THREADS still overrides it.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        runtime.worker_threads(cores.min(2));
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hss-exporter: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hss-exporter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Demo) => {
            let listen = cli.listen_address.as_deref().unwrap_or("127.0.0.1:9943");
            let options = Options {
                web: web_security(&cli)?,
                ..Options::default()
            };
            let demo = Demo::start(listen).await?;
            let listener = demo
                .listener()
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let exporter = Exporter::start(&demo.settings, listener, options)?;
            println!("hss-exporter demo: metrics at http://{}/metrics (status page http://{}/, simulated API {})", exporter.addr, exporter.addr, demo.api_url());
            run_until_stopped(&exporter).await;
            exporter.shutdown().await;
            demo.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::CheckConfig) => {
            let Some(settings) = load(&cli)? else {
                return Ok(ExitCode::FAILURE);
            };
            print_plan(&settings);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Once) => {
            let Some(settings) = load(&cli)? else {
                return Ok(ExitCode::FAILURE);
            };
            let store = Arc::new(Store::new(settings.poll.stale_after));
            let failed = scheduler::poll_once(&settings, store.clone()).await?;
            use std::io::Write as _;
            std::io::stdout().write_all(&store.render())?;
            if failed > 0 {
                eprintln!(
                    "hss-exporter: {failed} of {} targets failed",
                    settings.targets().count()
                );
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let Some(settings) = load(&cli)? else {
                return Ok(ExitCode::FAILURE);
            };
            let options = Options {
                loader: Some(loader(&cli)),
                enable_lifecycle: cli.enable_lifecycle,
                web: web_security(&cli)?,
            };
            let listener = TcpListener::bind(settings.listen_address)
                .await
                .with_context(|| format!("cannot listen on {}", settings.listen_address))?;
            let exporter = Exporter::start(&settings, listener, options)?;
            // The exporter holds what it needs; 10,000 targets' worth of settings can go.
            drop(settings);
            run_until_stopped(&exporter).await;
            tracing::info!("shutting down");
            exporter.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads the configuration file with the process environment, applying
/// `--web.listen-address`; used at start-up and for every reload.
fn loader(cli: &Cli) -> Loader {
    let path = cli.config.clone();
    let listen = cli.listen_address.clone();
    Arc::new(move || {
        let env: config::Env = std::env::vars().collect();
        let mut settings = config::load_file(&path, &env)?;
        if let Some(addr) = &listen {
            settings.listen_address = config::parse_listen_address(addr).ok_or_else(|| {
                config::ConfigError::Invalid(vec![format!(
                    "--web.listen-address: invalid address {addr:?}"
                )])
            })?;
        }
        Ok(settings)
    })
}

/// Loads the config; on errors prints one line each to stderr and returns `None`.
fn load(cli: &Cli) -> anyhow::Result<Option<Settings>> {
    match loader(cli)() {
        Ok(settings) => Ok(Some(settings)),
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("hss-exporter: {line}");
            }
            Ok(None)
        }
    }
}

fn web_security(cli: &Cli) -> anyhow::Result<Option<Arc<Security>>> {
    let Some(path) = &cli.web_config_file else {
        return Ok(None);
    };
    let security = Security::load(path).context("--web.config.file")?;
    tracing::info!(file = %path.display(), ?security, "web endpoints protected");
    Ok(Some(Arc::new(security)))
}

fn print_plan(settings: &Settings) {
    println!(
        "configuration OK: {} accounts, {} targets, poll.interval {}",
        settings.accounts.len(),
        settings.targets().count(),
        humantime::format_duration(settings.poll.interval)
    );
    for a in &settings.accounts {
        let need = config::min_interval(a.targets.len(), a.rate_limit_per_minute);
        println!(
            "account {} (region {}, {} auth, {} calls/min, endpoint {}): {} targets, minimum interval {}",
            a.name, a.region, a.credentials.kind(), a.rate_limit_per_minute, a.endpoint, a.targets.len(),
            humantime::format_duration(std::time::Duration::from_secs(need.as_secs_f64().ceil() as u64))
        );
        for t in &a.targets {
            println!("  {t}");
        }
    }
    for w in scheduler::capacity_warnings(settings) {
        println!("warning: {w}");
    }
}

fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<()> {
    // EnvFilter takes any bare word as a target name, which would silently log nothing.
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    if !level.contains('=') && !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
        anyhow::bail!(
            "unknown level {level:?} (expected one of {})",
            LEVELS.join(", ")
        );
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

/// Signals, handled in this one place: SIGTERM (systemd, Kubernetes) and SIGINT (Ctrl-C)
/// stop the exporter cleanly; SIGHUP reloads the configuration, as for other exporters.
async fn run_until_stopped(exporter: &Exporter) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (term, hup) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        );
        let (Ok(mut term), Ok(mut hup)) = (term, hup) else {
            tracing::warn!("cannot listen for SIGTERM/SIGHUP; only Ctrl-C stops the exporter");
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = term.recv() => return,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    // The outcome is logged and exported by the reload itself.
                    let _ = exporter.reload().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
