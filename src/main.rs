//! The `carat` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use carat::agent::LoadConfig;
use carat::config::Outputs;
use carat::{load_config, load_config_with, Agent, Registry};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "carat",
    version,
    about = "A host metrics agent with Diamond's metric paths"
)]
struct Cli {
    /// Configuration file (default: $CARAT_CONFIG, then /etc/carat/carat.toml,
    /// then the built-in default).
    #[arg(short, long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent in the foreground until SIGTERM, SIGINT or SIGQUIT;
    /// SIGHUP reloads the configuration.
    Run,
    /// Run every enabled collector twice, print the metrics, exit. Any valid
    /// configuration, with or without outputs: nothing is sent.
    Once {
        /// Seconds between the two runs (rates need two samples).
        #[arg(long, default_value_t = 1.0)]
        gap: f64,
    },
    /// Validate the configuration and exit.
    CheckConfig,
    /// List the collector kinds this build has, with their options.
    List,
    /// Print a complete commented configuration.
    SampleConfig,
    /// Translate a Diamond configuration (diamond.conf) into carat's TOML on
    /// standard output; what cannot be translated is listed on standard
    /// error.
    MigrateDiamond {
        /// The Diamond configuration file.
        #[arg(value_name = "DIAMOND_CONF")]
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let registry = Registry::builtin();
    match cli.command {
        Command::List => {
            print!("{}", registry.list());
            ExitCode::SUCCESS
        }
        Command::SampleConfig => {
            print!("{}", carat::defaults::sample_config(&registry));
            ExitCode::SUCCESS
        }
        Command::MigrateDiamond { path } => migrate_diamond(&path, &registry),
        Command::CheckConfig => match load_config(cli.config.as_deref(), &registry) {
            Ok((config, builtin)) => {
                let source = if builtin {
                    "the built-in default".to_owned()
                } else {
                    config.describe_files()
                };
                let enabled = config
                    .collectors
                    .iter()
                    .filter(|c| c.common.enabled)
                    .count();
                println!(
                    "configuration OK ({source}): {enabled} collector instances enabled, {} outputs",
                    config.outputs.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => config_error(&e),
        },
        Command::Once { gap } => {
            // Like Telegraf's --test: any valid configuration, with or
            // without outputs (nothing is sent; the lines are printed).
            let loaded = load_config_with(cli.config.as_deref(), &registry, Outputs::Optional);
            let (config, _) = match loaded {
                Ok(c) => c,
                Err(e) => return config_error(&e),
            };
            let _ = init_logging(&config.agent.log_level);
            let gap = Duration::try_from_secs_f64(gap).unwrap_or(Duration::from_secs(1));
            let Ok(runtime) = runtime() else {
                eprintln!("carat: cannot start the async runtime");
                return ExitCode::FAILURE;
            };
            let agent = Agent::new(config);
            let (lines, errors) = runtime.block_on(agent.collect_twice(gap));
            for line in &lines {
                println!("{line}");
            }
            for e in &errors {
                eprintln!("carat: collector {e}");
            }
            if errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Run => {
            let (config, builtin) = match load_config(cli.config.as_deref(), &registry) {
                Ok(c) => c,
                Err(e) => return config_error(&e),
            };
            let log_filter = init_logging(&config.agent.log_level);
            if builtin {
                tracing::info!(
                    "no configuration file found (-c, $CARAT_CONFIG, {}): running the built-in default: cpu, memory and loadavg every 10 s to standard output",
                    carat::defaults::SYSTEM_PATH
                );
            } else {
                tracing::info!("configuration read from {}", config.describe_files());
            }
            let Ok(runtime) = runtime() else {
                eprintln!("carat: cannot start the async runtime");
                return ExitCode::FAILURE;
            };
            // A reload reads the configuration as the start did, and applies
            // its log level unless RUST_LOG sets one.
            let path = cli.config.clone();
            let load: LoadConfig = Arc::new(move || {
                let (config, _) = load_config(path.as_deref(), &registry)?;
                log_filter.apply(&config.agent.log_level);
                Ok(config)
            });
            runtime.block_on(async {
                // First: until the handlers are in place, SIGHUP and most
                // other signals end the process, losing what is buffered.
                let signals = carat::signals::Signals::install();
                let (commands, received) = tokio::sync::mpsc::channel(4);
                tokio::spawn(signals.forward(commands));
                let agent = Agent::new(config);
                tracing::info!(
                    "carat {} running as host `{}`",
                    env!("CARGO_PKG_VERSION"),
                    agent.host()
                );
                agent.run(received, Some(load)).await;
            });
            ExitCode::SUCCESS
        }
    }
}

/// `carat migrate-diamond`: the TOML on standard output, a line per option
/// not translated (and per thing to do) on standard error. Exit 0 when a
/// configuration was written, 2 when the Diamond file cannot be read.
fn migrate_diamond(path: &std::path::Path, registry: &Registry) -> ExitCode {
    match carat::migrate::migrate(path, registry) {
        Ok(migration) => {
            print!("{}", migration.toml);
            for note in &migration.notes {
                eprintln!("carat: {note}");
            }
            eprintln!(
                "carat: migrate-diamond: written: collector instances {}, outputs {}; options not translated: {}{}",
                migration.collectors,
                migration.outputs,
                migration.untranslated(),
                if migration.untranslated() > 0 { " (listed above)" } else { "" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("carat: cannot migrate the Diamond configuration: {e}");
            ExitCode::from(2)
        }
    }
}

fn config_error(e: &carat::ConfigError) -> ExitCode {
    eprintln!("carat: configuration error: {e}");
    ExitCode::from(2)
}

/// Two worker threads: collectors spend their time waiting on I/O, and the
/// agent must stay small on every host.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .thread_name("carat-worker")
        .enable_all()
        .build()
}

/// Colour in the log only when standard error is a terminal, and `NO_COLOR`
/// (<https://no-color.org>) is not set to something: a log written to a
/// file, a pipe or the journal carries no escape codes.
fn colour_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The log filter, changed by a reload's `log_level` unless `RUST_LOG` set
/// it.
struct LogFilter {
    handle: Option<tracing_subscriber::reload::Handle<EnvFilter, Formatter>>,
}

type Formatter = tracing_subscriber::fmt::Formatter<
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format,
    fn() -> std::io::Stderr,
>;

impl LogFilter {
    /// Logs at `level` from now on; a level that is not one is logged and
    /// changes nothing.
    fn apply(&self, level: &str) {
        let Some(handle) = &self.handle else { return };
        match EnvFilter::try_new(level) {
            Ok(filter) => {
                if let Err(e) = handle.reload(filter) {
                    tracing::warn!("cannot change the log level to {level}: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("log_level {level:?} is not a log level ({e}); kept as it was")
            }
        }
    }
}

fn init_logging(default_level: &str) -> LogFilter {
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let filter = from_env
        .or_else(|| EnvFilter::try_new(default_level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr as fn() -> std::io::Stderr)
        .with_ansi(colour_wanted())
        .with_target(false)
        .with_filter_reloading();
    let handle = builder.reload_handle();
    builder.init();
    // Collector panics are caught and reported once per burst by the
    // scheduler; the default hook would print every one of them.
    std::panic::set_hook(Box::new(|info| {
        tracing::debug!("panic: {info}");
    }));
    LogFilter {
        handle: (!fixed).then_some(handle),
    }
}
