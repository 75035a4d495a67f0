//! The `certbound` command: clap over the server (and, later, client) crates. Glue only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use certbound_server::{Part, StackConfig};
use clap::{Parser, Subcommand};

mod client_commands;
mod demo;
mod receiver;

/// certbound: a self-hostable trust stack for FAPI-grade card-issuing APIs.
#[derive(Debug, Parser)]
#[command(name = "certbound", version)]
struct Cli {
    /// The profile `certbound onboard --out` wrote (for the single steps): its directory or its
    /// profile.toml.
    #[arg(long, global = true, default_value = "certbound-client")]
    profile: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the stack: creates the data dir on first start, reuses it afterwards.
    Up(Box<UpArgs>),
    /// Manage the authorization server's token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// A consistent copy of the SQLite database while the stack serves (the master key is
    /// not in it: keep it apart). PostgreSQL: use pg_dump.
    Backup {
        /// The file to write (must not exist); created 0600.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// A new data dir from a backup and the master key it was sealed under.
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// The new data dir (must not exist or be empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// The master key file of the stack the backup came from.
        #[arg(long)]
        master_key_file: PathBuf,
    },
    /// Manage the master key that seals every secret at rest.
    #[command(subcommand, name = "master-key")]
    MasterKey(MasterKeyCommand),
    /// Onboard a client: organisation, application, keys and certificates, RC token, SSA,
    /// registration and access token, each step as the seed names it.
    Onboard(Box<client_commands::OnboardArgs>),
    /// Start the whole stack in-process, onboard, tour the Cards API, clean up.
    Demo,
    /// The seed's single steps, on a profile made by `onboard`.
    #[command(flatten)]
    Step(client_commands::StepCommand),
}

#[derive(Debug, Subcommand)]
enum MasterKeyCommand {
    /// Seal every secret (key material, token signing keys, cards' PAN, CVV, PIN) under a new
    /// master key in one transaction; the old key is kept as master.key.<UTC time>. Stop every
    /// instance first.
    Rotate(StoreArgs),
}

/// Where the stack keeps its data, as `up` finds it.
#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// The stack's TOML config file (flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (database, master key, ca.pem, admin.token).
    #[arg(long, env = "CERTBOUND_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The shared PostgreSQL database (postgres://...) instead of SQLite in the data dir.
    #[arg(long, env = "CERTBOUND_DATABASE_URL")]
    database_url: Option<String>,
}

impl StoreArgs {
    fn config(self) -> Result<StackConfig, String> {
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
        Ok(config)
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Report every error of a config file (the one `certbound up --config` reads), each with
    /// its key; exit 0 when there is none.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Add a token signing key: published at once, signing after the delay; older keys stay
    /// published until their tokens have expired.
    Rotate(RotateArgs),
}

#[derive(Debug, clap::Args)]
struct RotateArgs {
    /// The stack's config file, data dir and database: its token lifetime is used unless
    /// `--token-lifetime` overrides it.
    #[command(flatten)]
    store: StoreArgs,
    /// Seconds between publishing the new key and signing with it: at least the time every
    /// instance needs to see it (its key ring reloads within 10 s, a resource server refetches
    /// an unknown key within 5 s more), so shorter delays are refused.
    #[arg(long, default_value_t = certbound_server::DEFAULT_PUBLISH_DELAY)]
    publish_delay: i64,
    /// The access token lifetime the stack uses, seconds (old keys stay published that long);
    /// by default the config file's, else the stack's default.
    #[arg(long)]
    token_lifetime: Option<i64>,
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// The config file (flags override it), the data dir, and PostgreSQL instead of SQLite.
    #[command(flatten)]
    store: StoreArgs,
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
    /// Authorization server listener address.
    #[arg(long)]
    listen_authz: Option<SocketAddr>,
    /// Cards API listener address.
    #[arg(long)]
    listen_cards: Option<SocketAddr>,
    /// Operations listener address (/metrics, /livez, /readyz; plain HTTP).
    #[arg(long)]
    listen_ops: Option<SocketAddr>,
    /// Run no operations listener.
    #[arg(long)]
    no_ops: bool,
    /// A path for the authorization server's issuer, e.g. /uat-thredd/confidential-clients.
    #[arg(long)]
    issuer_path: Option<String>,
    /// The directory to trust SSAs from, when it runs elsewhere.
    #[arg(long)]
    directory_url: Option<String>,
    /// FAPI 2: client assertions must carry the issuer alone as `aud`.
    #[arg(long)]
    strict_audience: bool,
    /// The authorization server's public issuer URL, the same for every instance behind a
    /// load balancer.
    #[arg(long)]
    authz_issuer: Option<String>,
    /// Access token lifetime in seconds.
    #[arg(long)]
    token_lifetime: Option<i64>,
    /// Also accept RS256 client assertions.
    #[arg(long)]
    allow_rs256: bool,
    /// Print the effective configuration (defaults, then the file, then the flags; secrets
    /// redacted) and exit without starting.
    #[arg(long)]
    print_config: bool,
    /// Log lines as `text` (for people) or `json` (one object per line with timestamp, level,
    /// part, trace id and message, for log shippers).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl UpArgs {
    fn into_config(self) -> Result<StackConfig, String> {
        let mut config = self.store.config()?;
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
        if let Some(address) = self.listen_authz {
            config.listen.authz = address;
        }
        if let Some(address) = self.listen_cards {
            config.listen.cards = address;
        }
        if let Some(address) = self.listen_ops {
            config.ops.listen = address;
        }
        if self.no_ops {
            config.ops.enabled = false;
        }
        if let Some(path) = self.issuer_path {
            config.issuer_path = path;
        }
        if self.directory_url.is_some() {
            config.directory_url = self.directory_url;
        }
        config.strict_audience |= self.strict_audience;
        if self.authz_issuer.is_some() {
            config.authz_issuer = self.authz_issuer;
        }
        if let Some(lifetime) = self.token_lifetime {
            config.token_lifetime_seconds = lifetime;
        }
        config.allow_rs256 |= self.allow_rs256;
        Ok(config)
    }
}

/// `certbound backup`.
async fn backup(out: &std::path::Path, store: StoreArgs) -> Result<(), String> {
    let config = store.config()?;
    let size = certbound_server::backup(&config, out)
        .await
        .map_err(|error| error.to_string())?;
    println!(
        "backed up {} to {} ({size} bytes, 0600)",
        config.data_dir.join("certbound.db").display(),
        out.display()
    );
    println!(
        "the master key is not in it: keep {} apart; restore with `certbound restore --from {} --data-dir NEW --master-key-file KEY`",
        config.data_dir.join("master.key").display(),
        out.display()
    );
    Ok(())
}

/// `certbound master-key rotate`.
async fn rotate_master_key(args: StoreArgs) -> Result<(), String> {
    let config = args.config()?;
    if !config.data_dir.join("master.key").exists() {
        return Err(format!(
            "no master key at {}: pass the stack's --data-dir (or --config)",
            config.data_dir.join("master.key").display()
        ));
    }
    println!(
        "stop every certbound instance of this stack before rotating: a running one keeps the old key"
    );
    let rotation = certbound_server::rotate_master_key(&config, certbound_client::now())
        .await
        .map_err(|error| error.to_string())?;
    println!(
        "master key rotated: {} sealed values sealed anew; the new key is {}, the old one kept as {}",
        rotation.resealed,
        config.data_dir.join("master.key").display(),
        rotation.backup.display()
    );
    println!("keep the old key until a backup made after this rotation exists; then destroy it");
    Ok(())
}

/// `certbound config check FILE`.
fn check_config(file: &std::path::Path) -> ExitCode {
    match StackConfig::check_file(file) {
        Ok(_) => {
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("{}: {problem}", file.display());
            }
            eprintln!(
                "{} problem{} in {}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                file.display()
            );
            ExitCode::FAILURE
        }
    }
}

async fn up(args: UpArgs) -> Result<(), String> {
    let print = args.print_config;
    let config = args.into_config()?;
    if print {
        print!("{}", config.redacted_toml());
        return Ok(());
    }
    let data_dir = config.data_dir.clone();
    let stack = certbound_server::start(config)
        .await
        .map_err(|error| error.to_string())?;
    println!("certbound is up");
    if let (Some(public), Some(mtls)) = (&stack.directory_url, &stack.directory_mtls_url) {
        println!("  directory        {public}");
        println!("  directory mTLS   {mtls}");
        println!("  console          {public}/console/");
    }
    if let Some(authz) = &stack.authz_url {
        println!("  authz            {authz}");
    }
    if let Some(cards) = &stack.cards_url {
        println!("  cards            {cards}");
    }
    if let Some(ops) = &stack.ops_url {
        println!("  operations       {ops}/metrics  /livez  /readyz");
    }
    println!("  trust anchor     {}", data_dir.join("ca.pem").display());
    println!(
        "  admin token      {}",
        data_dir.join("admin.token").display()
    );
    if let Some(url) = stack.directory_url.as_ref().or(stack.authz_url.as_ref()) {
        println!(
            "Try: curl --cacert {} {url}/.well-known/openid-configuration",
            data_dir.join("ca.pem").display()
        );
    }
    println!("Stop with Ctrl-C.");
    wait_for_stop().await;
    println!("stopping: draining in-flight requests");
    stack.shutdown().await;
    println!("stopped");
    Ok(())
}

async fn rotate(args: RotateArgs) -> Result<(), String> {
    let from_file = args.store.config.is_some();
    let mut config = args.store.config()?;
    if let Some(lifetime) = args.token_lifetime {
        config.token_lifetime_seconds = lifetime;
    }
    let kid = certbound_server::rotate_token_signing_key(&config, args.publish_delay)
        .await
        .map_err(|error| error.to_string())?;
    println!(
        "new token signing key {kid}: published now, signing in {} s",
        args.publish_delay
    );
    println!(
        "older keys stay in the JWKS until their tokens expire ({} s after that, the token lifetime{})",
        config.token_lifetime_seconds,
        if from_file && args.token_lifetime.is_none() {
            " of the config file"
        } else {
            ""
        }
    );
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

/// Colour codes only on a terminal, and never with `NO_COLOR` set (no-color.org).
fn colour() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// mimalloc instead of glibc's allocator: every request allocates (headers, JSON, claims), and
/// glibc's malloc and free (with its consolidation) took about a sixth of the CPU of a Cards API
/// read in the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs what it does; the demo keeps the terminal for its steps; the client
    // commands report every failure as an error that says what to do, so the libraries' own log
    // lines (rustls' verifier logs an unknown issuer at ERROR) would only repeat it, raw.
    let default_filter = match cli.command {
        Command::Up(_) => "warn,certbound=info",
        Command::Demo
        | Command::Keys(_)
        | Command::Config(_)
        | Command::MasterKey(_)
        | Command::Backup { .. }
        | Command::Restore { .. } => "warn",
        Command::Onboard(_) | Command::Step(_) => "off",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CERTBOUND_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let json = matches!(&cli.command, Command::Up(args) if args.log_format == LogFormat::Json);
    if json {
        // The request span (name `request`, fields part and trace_id) rides along in `spans`.
        tracing_subscriber::fmt()
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(colour())
            .with_writer(std::io::stderr)
            .init();
    }
    let profile = cli.profile.clone();
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
            Command::Up(args) => up(*args).await.map(|()| ExitCode::SUCCESS),
            Command::Config(ConfigCommand::Check { file }) => Ok(check_config(&file)),
            Command::Backup { out, store } => backup(&out, store).await.map(|()| ExitCode::SUCCESS),
            Command::Restore {
                from,
                data_dir,
                master_key_file,
            } => certbound_server::restore(&from, &data_dir, &master_key_file)
                .await
                .map(|()| {
                    println!(
                        "restored {} into {}: start it with `certbound up --data-dir {}`",
                        from.display(),
                        data_dir.display(),
                        data_dir.display()
                    );
                    ExitCode::SUCCESS
                })
                .map_err(|error| error.to_string()),
            Command::MasterKey(MasterKeyCommand::Rotate(args)) => {
                rotate_master_key(args).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Keys(KeysCommand::Rotate(args)) => {
                rotate(args).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Onboard(args) => client_commands::run_onboard(*args)
                .await
                .map(|()| ExitCode::SUCCESS)
                .map_err(|error| error.to_string()),
            Command::Demo => demo::run().await.map(|()| ExitCode::SUCCESS),
            // `call` and `cards` exit 1 on a non-2xx answer they have printed already.
            Command::Step(step) => client_commands::run_step(&profile, step)
                .await
                .map_err(|error| error.to_string()),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            // Errors quote servers (`error_description`, bodies): nothing of theirs may drive
            // the terminal.
            eprintln!("error: {}", certbound_client::printable(&error));
            ExitCode::FAILURE
        }
    }
}
