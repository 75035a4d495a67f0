//! The `certbound` command: clap over the server (and, later, client) crates. Glue only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use certbound_server::{Part, StackConfig};
use clap::{Parser, Subcommand};

/// certbound: a self-hostable trust stack for FAPI-grade card-issuing APIs.
#[derive(Debug, Parser)]
#[command(name = "certbound", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the stack: creates the data dir on first start, reuses it afterwards.
    Up(UpArgs),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Data directory (database, master key, ca.pem, admin.token).
    #[arg(long, env = "CERTBOUND_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A TOML config file; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Share state through PostgreSQL (postgres://...) instead of SQLite in the data dir.
    #[arg(long, env = "CERTBOUND_DATABASE_URL")]
    database_url: Option<String>,
    /// Parts to run, comma separated.
    #[arg(long, value_delimiter = ',')]
    role: Vec<Part>,
    /// Host name used in public URLs.
    #[arg(long)]
    public_host: Option<String>,
    /// Directory public listener address.
    #[arg(long)]
    listen_directory: Option<SocketAddr>,
    /// Directory mTLS listener address.
    #[arg(long)]
    listen_directory_mtls: Option<SocketAddr>,
    /// Access token lifetime in seconds.
    #[arg(long)]
    token_lifetime: Option<i64>,
    /// Also accept RS256 client assertions.
    #[arg(long)]
    allow_rs256: bool,
}

impl UpArgs {
    fn into_config(self) -> Result<StackConfig, String> {
        let mut config = match &self.config {
            Some(path) => StackConfig::from_file(path).map_err(|error| error.to_string())?,
            None => StackConfig::default(),
        };
        if let Some(data_dir) = self.data_dir {
            config.data_dir = data_dir;
        }
        if self.database_url.is_some() {
            config.database_url = self.database_url;
        }
        if !self.role.is_empty() {
            config.roles = self.role;
        }
        if let Some(host) = self.public_host {
            config.public_host = host;
        }
        if let Some(address) = self.listen_directory {
            config.listen.directory = address;
        }
        if let Some(address) = self.listen_directory_mtls {
            config.listen.directory_mtls = address;
        }
        if let Some(lifetime) = self.token_lifetime {
            config.token_lifetime_seconds = lifetime;
        }
        config.allow_rs256 |= self.allow_rs256;
        Ok(config)
    }
}

async fn up(args: UpArgs) -> Result<(), String> {
    let config = args.into_config()?;
    let data_dir = config.data_dir.clone();
    let stack = certbound_server::start(config)
        .await
        .map_err(|error| error.to_string())?;
    println!("certbound is up");
    println!("  directory        {}", stack.directory_url);
    println!("  directory mTLS   {}", stack.directory_mtls_url);
    println!("  trust anchor     {}", data_dir.join("ca.pem").display());
    println!(
        "  admin token      {}",
        data_dir.join("admin.token").display()
    );
    println!(
        "Try: curl --cacert {} {}/.well-known/openid-configuration",
        data_dir.join("ca.pem").display(),
        stack.directory_url
    );
    println!("Stop with Ctrl-C.");
    wait_for_stop().await;
    println!("stopping: draining in-flight requests");
    stack.shutdown().await;
    println!("stopped");
    Ok(())
}

async fn wait_for_stop() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CERTBOUND_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,certbound=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
