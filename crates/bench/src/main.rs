//! `certbound-bench`: measures certbound against the cryptography it cannot avoid and, in the
//! same invocation, against a peer (node-oidc-provider). See DESIGN.md section 9.
//!
//! The server runs as its own process so its CPU time is read from `/proc/<pid>/stat` apart from
//! this load generator's. Client assertions are pre-generated before timing (RSA signing would
//! otherwise measure the load generator), round-robin over many clients.

// `serde_json::Value["key"]` answers `Null` for a missing key; it never panics. Bench code.
#![allow(clippy::indexing_slicing)]

mod disk;
mod floor;
mod load;
mod peer;
mod rounds;
mod seed;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};

use load::{Generator, Stats};
use server::{Server, cpu_seconds};

/// Load generator and crypto-floor measurement.
#[derive(Debug, Parser)]
#[command(name = "certbound-bench")]
struct Args {
    /// Seconds per scenario.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent connections (one onboarded client each).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Scenarios, comma separated: token-keepalive, token-newconn, handshake (a new mutual-TLS
    /// connection per `/healthz`: the floor of token-newconn), cards, refused (`GET /cards/..`
    /// with a token that is not one: a 401 and its audit record, what a flood of bad requests
    /// costs), register, durable-write (the filesystem of the server's data dir, under
    /// `TMPDIR`: 4 KiB `O_DIRECT | O_DSYNC` writes back to back, as the server on SQLite makes a
    /// used `jti` durable: the floor of a token's latency, and a worst case of its tail).
    /// `refused`, `register` and `durable-write` are not defaults; `register` needs its own
    /// software statement and a fresh SSA for each registration, so it runs out of prepared
    /// requests long before the duration (a smoke test, not a measurement).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "token-keepalive,token-newconn,handshake,cards"
    )]
    scenarios: Vec<String>,
    /// Client assertions pre-generated per connection for each token scenario.
    #[arg(long, default_value_t = 2500)]
    assertions: usize,
    /// Software statements pre-created for the register scenario.
    #[arg(long, default_value_t = 60)]
    registrations: usize,
    /// The certbound binary to start (a release build for real numbers).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Also run the token scenarios against a peer: `oidc-provider`.
    #[arg(long)]
    peer: Option<String>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a Markdown table here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Pace every scenario at this many requests per second in total (open loop), instead of
    /// as fast as the connections go: for latency at a given load. `durable-write` is never
    /// paced.
    #[arg(long, value_parser = positive_rate)]
    rate: Option<f64>,
    /// Before measuring, add this many registered clients (each with a transport certificate)
    /// to the server's database: is the cost per request flat in the number of clients?
    #[arg(long, default_value_t = 0)]
    seed_clients: u64,
    /// Before measuring, add this many cards to the server's database.
    #[arg(long, default_value_t = 0)]
    seed_cards: u64,
    /// Run the server on this PostgreSQL database instead of SQLite in its data dir.
    #[arg(long)]
    database_url: Option<String>,
    /// Instances of the server on the one database (1 or 2; 2 needs --database-url): the
    /// second runs authz and cards only, announcing the first's issuer, and the connections
    /// alternate between them. Server CPU is both processes'.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Rate limits on (set too high to refuse anything, so every request is counted) instead
    /// of off.
    #[arg(long)]
    rate_limits_on: bool,
    /// The server's async worker threads (each instance's; passed as tokio's
    /// `TOKIO_WORKER_THREADS`, at least 1). By default tokio's: one per core.
    #[arg(long)]
    server_workers: Option<std::num::NonZeroUsize>,
    /// Measure the scenarios this many times over, one round after the other against the one
    /// server, and print each figure's median and range: a ratio is taken within its round (a
    /// token against the floor measured with it, a new connection's token against that round's
    /// handshake), so what the machine's drift moves in both cancels out of it (a drift that moves
    /// one and not the other stays in it). The peer runs once, after the last round.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Fail (exit 1) if any request errs: for CI smoke runs.
    #[arg(long)]
    require_no_errors: bool,
}

/// `--rate`: a finite number of requests per second above zero.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a rate: give requests per second above 0, e.g. 1000"
        )),
    }
}

/// A scenario's result.
struct Row {
    server: String,
    scenario: String,
    /// Which of `--rounds` measured it (from 1); `None` for the peer, which runs once after them.
    round: Option<usize>,
    stats: Stats,
    cpu_per_request_us: f64,
    floor_us: Option<f64>,
    /// What a row that is not a server's says of itself (the `durable-write` scenario's).
    details: Option<Value>,
}

impl Row {
    fn json(&self) -> Value {
        json!({
            "server": self.server,
            "scenario": self.scenario,
            "round": self.round,
            "stats": self.stats.json(),
            "server_cpu_per_request_us": self.cpu_per_request_us,
            "requests_per_server_cpu_second": if self.cpu_per_request_us > 0.0 { 1e6 / self.cpu_per_request_us } else { 0.0 },
            "crypto_floor_us": self.floor_us,
            "floor_over_server_cpu": self.floor_us.map(|floor| if self.cpu_per_request_us > 0.0 { floor / self.cpu_per_request_us } else { 0.0 }),
            "details": self.details,
        })
    }
}

async fn measure(
    pids: &[u32],
    generators: Vec<Generator>,
    duration: Duration,
    rate: Option<f64>,
    expected: load::Expected,
) -> (Stats, f64) {
    let cpu = || pids.iter().map(|pid| cpu_seconds(*pid)).sum::<f64>();
    let before = cpu();
    let stats = load::run(generators, duration, rate, expected).await;
    let after = cpu();
    let per_request = if stats.requests > 0 {
        (after - before) * 1e6 / stats.requests as f64
    } else {
        0.0
    };
    (stats, per_request)
}

fn print_row(row: &Row) {
    let floor = row
        .floor_us
        .map(|floor| {
            format!(
                "{floor:.0} µs floor, ratio {:.2}",
                floor / row.cpu_per_request_us.max(1e-9)
            )
        })
        .unwrap_or_default();
    println!(
        "  {:<16} {:<16} {:>8.0} req/s over {:>5.1} s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  errors {}  server CPU {:>7.1} µs/req  {}",
        row.server,
        row.scenario,
        row.stats.rate(),
        row.stats.seconds,
        row.stats.percentile(0.5),
        row.stats.percentile(0.99),
        row.stats.percentile(1.0),
        row.stats.errors,
        row.cpu_per_request_us,
        floor
    );
    if let Some(error) = &row.stats.first_error {
        println!(
            "    first error: {}",
            error.chars().take(300).collect::<String>()
        );
    }
}

fn markdown(rows: &[Row], args: &Args) -> String {
    // With several rounds, each row says which round measured it.
    let (round_header, round_rule) = if args.rounds > 1 {
        ("| round ", "|---")
    } else {
        ("", "")
    };
    let mut out = format!(
        "{round_header}| server | scenario | req/s | measured s | p50 ms | p90 ms | p99 ms | max ms | errors | server CPU µs/req | req per CPU-second | crypto floor µs | floor / CPU |\n{round_rule}|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        if args.rounds > 1 {
            out.push_str(&format!(
                "| {} ",
                row.round
                    .map_or_else(|| "—".to_owned(), |round| round.to_string())
            ));
        }
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.0} | {} | {} |\n",
            row.server,
            row.scenario,
            row.stats.rate(),
            row.stats.seconds,
            row.stats.percentile(0.5),
            row.stats.percentile(0.9),
            row.stats.percentile(0.99),
            row.stats.percentile(1.0),
            row.stats.errors,
            row.cpu_per_request_us,
            if row.cpu_per_request_us > 0.0 {
                1e6 / row.cpu_per_request_us
            } else {
                0.0
            },
            row.floor_us
                .map(|floor| format!("{floor:.0}"))
                .unwrap_or_else(|| "—".into()),
            row.floor_us
                .map(|floor| format!("{:.2}", floor / row.cpu_per_request_us.max(1e-9)))
                .unwrap_or_else(|| "—".into()),
        ));
    }
    if rows.iter().any(|row| row.scenario == "durable-write") {
        out.push_str("\nThe `disk` row is no server: durable 4 KiB writes back to back (never paced) in the server's data dir; its CPU column is the bench process's per write.\n");
    }
    out.push_str(&format!(
        "\nUp to {} s per scenario (a token scenario ends early when its pre-generated assertions run out: see measured s), {} connections, {} pre-generated PS256 assertions per connection, server worker threads: {}, load generator on the same machine.\n",
        args.duration,
        args.connections,
        args.assertions,
        args.server_workers
            .map_or_else(|| "one per core".to_owned(), |workers| workers.to_string())
    ));
    out
}

#[tokio::main]
async fn main() {
    match run(Args::parse()).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let binary = match &args.server {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|error| error.to_string())?
            .with_file_name("certbound"),
    };
    let work = tempfile::tempdir().map_err(|error| error.to_string())?;
    let data = work.path().join("data");
    println!("Starting {} ...", binary.display());
    let database: Vec<String> = args
        .database_url
        .iter()
        .flat_map(|url| ["--database-url".to_owned(), url.clone()])
        .collect();
    let server = Server::certbound(
        &binary,
        &data,
        &database,
        args.rate_limits_on,
        args.server_workers,
    )?;
    let second = match args.instances {
        1 => None,
        2 if args.database_url.is_some() => {
            let second_data = work.path().join("data-2");
            std::fs::create_dir_all(&second_data).map_err(|error| error.to_string())?;
            std::fs::copy(data.join("master.key"), second_data.join("master.key"))
                .map_err(|error| error.to_string())?;
            let mut extra = database.clone();
            extra.extend([
                "--role".to_owned(),
                "authz,cards".to_owned(),
                "--directory-url".to_owned(),
                server.url("directory")?,
                "--authz-issuer".to_owned(),
                server.url("authz")?,
            ]);
            Some(Server::certbound(
                &binary,
                &second_data,
                &extra,
                args.rate_limits_on,
                args.server_workers,
            )?)
        }
        _ => return Err("--instances is 1, or 2 with --database-url".into()),
    };
    let pids: Vec<u32> = std::iter::once(server.pid())
        .chain(second.as_ref().map(Server::pid))
        .collect();
    if args.seed_clients > 0 || args.seed_cards > 0 {
        println!(
            "Seeding {} clients and {} cards ...",
            args.seed_clients, args.seed_cards
        );
        let url = args.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}?mode=rwc", data.join("certbound.db").display())
        });
        seed::seed(&url, args.seed_clients, args.seed_cards).await?;
    }
    let mut stack =
        certbound::Stack::prepare(&server, &data, work.path(), args.connections).await?;
    if let Some(second) = &second {
        stack.spread_over(&server, second)?;
    }
    let duration = Duration::from_secs(args.duration);
    let mut rows = Vec::new();
    println!(
        "Measuring (up to {} s per scenario, {} connections):",
        args.duration, args.connections
    );

    let rounds = usize::try_from(args.rounds).unwrap_or(1);
    for round in 1..=rounds {
        if rounds > 1 {
            println!("Round {round} of {rounds}:");
        }
        let measured = measure_round(&args, &pids, &stack, &data, duration, round).await?;
        compare_handshake(&measured, round);
        rows.extend(measured);
    }
    let summary = rounds::summarise(&rows);
    if rounds > 1 {
        println!("Over the {rounds} rounds (each ratio taken within its round):");
        for figure in &summary {
            println!("  {}", figure.line());
        }
    }
    if let Some(peer) = &args.peer {
        if peer != "oidc-provider" {
            return Err(format!("unknown peer `{peer}`: the peer is oidc-provider"));
        }
        let peer_rows = peer::run(&stack, &args, work.path()).await?;
        for row in peer_rows {
            print_row(&row);
            rows.push(row);
        }
        compare(&rows, &summary);
    }

    let document = json!({
        "machine": machine(),
        "seeded": {"clients": args.seed_clients, "cards": args.seed_cards},
        "database": if args.database_url.is_some() { "postgresql" } else { "sqlite" },
        "instances": args.instances,
        "rate_limits": if args.rate_limits_on { "on (counted, never refusing)" } else { "off" },
        // A number, or null for tokio's default (one per core).
        "server_worker_threads": args.server_workers,
        "duration_seconds": args.duration,
        "connections": args.connections,
        "assertions_per_connection": args.assertions,
        "rounds": rounds,
        "results": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "over_the_rounds": summary.iter().map(|figure| json!({
            "scenario": figure.scenario,
            "figure": figure.name,
            "unit": figure.unit.trim(),
            "median": figure.median(),
            "lowest": figure.range().0,
            "highest": figure.range().1,
            "each_round": figure.values.iter().map(|(round, value)| json!({"round": round, "value": value})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&document).unwrap_or_default(),
        )
        .map_err(|error| error.to_string())?;
    }
    if let Some(path) = &args.markdown {
        let mut text = markdown(&rows, &args);
        if rounds > 1 {
            text.push_str(&rounds::markdown(&summary));
        }
        std::fs::write(path, text).map_err(|error| error.to_string())?;
    }
    let errors: usize = rows.iter().map(|row| row.stats.errors).sum();
    Ok(!(args.require_no_errors && errors > 0))
}

/// One round: every scenario of `--scenarios` once, in order.
async fn measure_round(
    args: &Args,
    pids: &[u32],
    stack: &certbound::Stack,
    data: &std::path::Path,
    duration: Duration,
    round: usize,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for scenario in &args.scenarios {
        if scenario == "durable-write" {
            rows.push(durable_writes(data, duration, args.database_url.is_some(), round).await?);
            continue;
        }
        // Each scenario's load, and which crypto floor it is compared with.
        let (generators, floor) = match scenario.as_str() {
            "token-keepalive" | "token-newconn" => (
                stack
                    .token_generators(args.assertions, scenario == "token-keepalive")
                    .await?,
                Some("token"),
            ),
            "handshake" => (stack.handshake_generators()?, None),
            "cards" => (stack.cards_generators().await?, Some("cards")),
            "refused" => (stack.refused_generators().await?, None),
            "register" => (stack.register_generators(args.registrations).await?, None),
            other => {
                return Err(format!(
                    "unknown scenario `{other}`: use token-keepalive, token-newconn, handshake, cards, refused, register, durable-write"
                ));
            }
        };
        let expected = if scenario == "refused" {
            load::Expected::Status(401)
        } else {
            load::Expected::Success
        };
        let (stats, cpu) = measure(pids, generators, duration, args.rate, expected).await;
        let floor_us = match floor {
            Some("token") => Some(stack.token_floor()? * 1e6),
            Some(_) => Some(stack.cards_floor().await? * 1e6),
            None => None,
        };
        let row = Row {
            server: "certbound".into(),
            scenario: scenario.clone(),
            round: Some(round),
            stats,
            cpu_per_request_us: cpu,
            floor_us,
            details: None,
        };
        print_row(&row);
        if floor == Some("token") && row.stats.seconds < duration.as_secs_f64() * 0.9 {
            println!(
                "    its {} pre-generated assertions per connection ran out after {:.1} of {} s: raise --assertions for a longer window",
                args.assertions, row.stats.seconds, args.duration
            );
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The `durable-write` scenario: the filesystem under the server's data dir, timed from this
/// process (see [`disk`]); `postgres` when the server keeps its used ids there instead.
async fn durable_writes(
    data: &std::path::Path,
    duration: Duration,
    postgres: bool,
    round: usize,
) -> Result<Row, String> {
    let data = data.to_path_buf();
    let measured = tokio::task::spawn_blocking(move || disk::measure(&data, duration))
        .await
        .map_err(|error| error.to_string())??;
    let stalls: Vec<u64> = measured
        .stats
        .latencies_us
        .iter()
        .copied()
        .filter(|latency| *latency > 10_000)
        .collect();
    let stalled_ms = stalls.iter().sum::<u64>() as f64 / 1000.0;
    let flags = if measured.direct {
        "O_DIRECT | O_DSYNC"
    } else {
        "O_DSYNC (the filesystem refused O_DIRECT)"
    };
    let filesystem = measured.filesystem.as_deref().unwrap_or("unknown");
    let row = Row {
        server: "disk".into(),
        scenario: "durable-write".into(),
        round: Some(round),
        details: Some(json!({
            "what": "4 KiB writes back to back (never paced) in the server's data dir, as the jti log makes a batch durable",
            "flags": flags,
            "filesystem": filesystem,
            "p99_9_ms": measured.stats.percentile(0.999),
            "writes_over_10_ms": stalls.len(),
            "writes_over_10_ms_total_ms": stalled_ms,
            "cpu": "this process's (user + system) per write, not a server's",
        })),
        stats: measured.stats,
        cpu_per_request_us: measured.cpu_per_write_us,
        floor_us: None,
    };
    print_row(&row);
    println!(
        "    4 KiB writes opened with {flags} on {filesystem} in the server's data dir, back to back (never paced), as the jti log writes a batch: p99.9 {:.2} ms, {} over 10 ms ({stalled_ms:.0} ms in all); the CPU column is this process's (user + system), not a server's",
        row.stats.percentile(0.999),
        stalls.len(),
    );
    if postgres {
        println!(
            "    with --database-url the server keeps its used ids in PostgreSQL, not here: this is the data dir's disk, not the server's commit"
        );
    }
    Ok(row)
}

/// A token over a new connection against the connection alone.
fn compare_handshake(rows: &[Row], round: usize) {
    let find = |scenario| rounds::of_round(rows, scenario, Some(round));
    if let (Some(token), Some(handshake)) = (find("token-newconn"), find("handshake")) {
        println!(
            "  token-newconn: {:.2}× the server CPU of a mutual-TLS connection alone ({:.0} vs {:.0} µs)",
            token.cpu_per_request_us / handshake.cpu_per_request_us,
            token.cpu_per_request_us,
            handshake.cpu_per_request_us
        );
    }
}

/// certbound against the peer, per token scenario: over several rounds, the median of
/// certbound's rounds (`summary`) against the peer's one run.
fn compare(rows: &[Row], summary: &[rounds::Figure]) {
    for scenario in ["token-keepalive", "token-newconn"] {
        let ours = summary
            .iter()
            .find(|figure| figure.scenario == scenario && figure.name == rounds::CPU);
        let theirs = rows.iter().find(|row| {
            row.server == "oidc-provider"
                && row.scenario == scenario
                && row.stats.errors == 0
                && row.cpu_per_request_us > 0.0
        });
        if let (Some(ours), Some(theirs)) = (ours, theirs) {
            let ours_us = ours.median();
            let of = if ours.values.len() > 1 {
                format!(", certbound's the median of {} rounds", ours.values.len())
            } else {
                String::new()
            };
            println!(
                "  {scenario}: certbound serves {:.1}× the tokens per server CPU-second of oidc-provider ({:.0} vs {:.0}{of})",
                theirs.cpu_per_request_us / ours_us,
                1e6 / ours_us,
                1e6 / theirs.cpu_per_request_us
            );
        }
    }
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .map(|line| line.split(':').nth(1).unwrap_or_default().trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    json!({"cpu": cpu, "cores": cores})
}

mod certbound;
