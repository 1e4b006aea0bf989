//! The `aether` command: `serve`, `migrate`, `admin create`, `channel create` and `check`
//! (CONTRACT.md). Loads the configuration once, then hands over to the library.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use aether::app::App;

/// mimalloc instead of glibc's malloc: the live window's parts and segments are allocated on
/// one thread and freed on another, and glibc's per-thread arenas kept the freed memory (the
/// soak's RSS grew ~1.6 MB/min while the live heap grew ~0.17 MB/min, measured with heaptrack).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use aether::auth::Role;
use aether::auth::accounts::{self, NewAccount};
use aether::channels::{self, NewChannel};
use aether::config::{Config, Sources};
use aether::db::Db;

#[derive(Debug, Parser)]
#[command(name = "aether", version, about = "Self-hosted live streaming and chat server")]
struct Cli {
    /// A TOML config file (over the embedded defaults; AETHER_* variables override it).
    #[arg(long, global = true, env = "AETHER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// HTTP listen address (overrides http.listen).
        #[arg(long)]
        http_listen: Option<SocketAddr>,
        /// RTMP listen address (overrides rtmp.listen).
        #[arg(long)]
        rtmp_listen: Option<SocketAddr>,
        /// WebRTC listen address, UDP and ICE-TCP (overrides webrtc.udp_listen and tcp_listen).
        #[arg(long)]
        webrtc_listen: Option<SocketAddr>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage accounts.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Manage channels.
    Channel {
        #[command(subcommand)]
        command: ChannelCommand,
    },
    /// Report whether the configuration, data directory, database and system tools are usable.
    Check,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an admin account.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        /// Read the password from standard input (it is never taken as an argument).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ChannelCommand {
    /// Create a channel and print its stream key.
    Create {
        name: String,
        /// The owning user's username.
        #[arg(long)]
        owner: String,
        #[arg(long, default_value = "")]
        title: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(Sources { file: cli.config.as_deref(), env: true }) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("aether: {error}");
            return ExitCode::from(2);
        }
    };
    aether::telemetry::init_logging(&config.log);
    let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
    match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("aether: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, mut config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { http_listen, rtmp_listen, webrtc_listen } => {
            config.http.listen = http_listen.unwrap_or(config.http.listen);
            config.rtmp.listen = rtmp_listen.unwrap_or(config.rtmp.listen);
            if let Some(addr) = webrtc_listen {
                (config.webrtc.udp_listen, config.webrtc.tcp_listen) = (addr, addr);
            }
            // Signals are caught from the start: one during start-up stops the server as soon
            // as it is built, cleanly, instead of killing it halfway.
            let shutdown = CancellationToken::new();
            let on_signal = shutdown.clone();
            let signals = shutdown_signal();
            tokio::spawn(async move {
                signals.await;
                tracing::info!("shutting down");
                on_signal.cancel();
            });
            let app = App::build(config).await?;
            app.run(shutdown).await?;
        }
        Command::Migrate => {
            let db = Db::connect(&config).await?;
            db.migrate().await?;
            println!("migrations applied");
        }
        Command::Admin { command: AdminCommand::Create { username, email, password_stdin: _ } } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password).context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            let db = migrated(&config).await?;
            let account = NewAccount::validate(&username, &email, password, Role::Admin)?;
            let user = accounts::create(&db, account).await?;
            println!("admin {} created", user.username);
        }
        Command::Channel { command: ChannelCommand::Create { name, owner, title } } => {
            let db = migrated(&config).await?;
            let user =
                accounts::find_by_username(&db, &owner).await?.with_context(|| format!("no user named {owner:?}"))?;
            let new = NewChannel { owner: user.id, name, title };
            let (channel, key) = channels::create(&db, new, u32::MAX).await?;
            println!("channel {} created for {}", channel.name, channel.owner);
            println!("stream key (shown once): {}", key.as_str());
        }
        Command::Check => return Ok(check(&config).await),
    }
    Ok(ExitCode::SUCCESS)
}

async fn migrated(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(config).await?;
    db.migrate().await?;
    Ok(db)
}

/// Prints one line per dependency; fails when something the server cannot run without is missing.
async fn check(config: &Config) -> ExitCode {
    let mut fatal = false;
    let mut report = |name: &str, ok: bool, required: bool, detail: String| {
        let mark = if ok {
            "ok"
        } else if required {
            "MISSING"
        } else {
            "absent"
        };
        println!("{mark:8} {name:22} {detail}");
        fatal |= required && !ok;
    };
    let probe = config.data_dir.join(".aether-check");
    let writable = std::fs::create_dir_all(&config.data_dir).and_then(|_| std::fs::write(&probe, b"ok")).is_ok();
    let _ = std::fs::remove_file(&probe);
    report("data directory", writable, true, config.data_dir.display().to_string());
    let database = match tokio::time::timeout(Duration::from_secs(3), Db::connect(config)).await {
        Ok(Ok(db)) => db.ping().await,
        Ok(Err(_)) | Err(_) => false,
    };
    let backend = if config.database.url.is_some() { "configured database.url" } else { "embedded SQLite" };
    report("database", database, true, backend.to_owned());
    report("redis", true, false, if config.redis.url.is_some() { "configured" } else { "off: in-process" }.to_owned());
    // The ladder's GStreamer elements: without them the server runs passthrough only.
    match aether_transcode::missing_elements() {
        Ok(missing) => {
            for (element, purpose) in aether_transcode::ELEMENTS {
                let found = !missing.contains(element);
                let detail =
                    if found { purpose.to_string() } else { format!("{purpose}; without it: passthrough only") };
                report(&format!("gstreamer {element}"), found, false, detail);
            }
        }
        Err(error) => report("gstreamer", false, false, format!("{error}; passthrough only")),
    }
    let ffmpeg = std::process::Command::new("ffmpeg").arg("-version").output().is_ok_and(|out| out.status.success());
    report("ffmpeg", ffmpeg, false, "tests and benchmarks".to_owned());
    if fatal { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
        let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
        async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = term.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
