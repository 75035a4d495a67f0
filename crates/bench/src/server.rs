//! The server under test: a `certbound up` child process (so its CPU time is its own), or a
//! peer process, and the reading of a process's CPU time from `/proc/<pid>/stat`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running server process.
pub(crate) struct Server {
    child: Child,
    /// Labelled URLs it printed (`directory`, `authz`, `cards`...).
    pub(crate) urls: Vec<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `certbound up` on free ports in `data`, with `extra` arguments. Rate limits are
    /// off (0) or, with `counted`, on but too high to refuse anything: every request is
    /// counted as in production, none is turned away. `workers` sets the server's async worker
    /// threads (tokio's `TOKIO_WORKER_THREADS`); without it the server has tokio's default, one
    /// per core, whatever this process's environment says.
    pub(crate) fn certbound(
        binary: &Path,
        data: &Path,
        extra: &[String],
        counted: bool,
        workers: Option<std::num::NonZeroUsize>,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(data).map_err(|error| error.to_string())?;
        let config = data.join("bench.toml");
        let limit = if counted { 1_000_000_000 } else { 0 };
        std::fs::write(
            &config,
            format!("[rate_limits]\ntoken_per_client = {limit}\ntoken_per_address = {limit}\nregister_per_address = {limit}\n"),
        )
        .map_err(|error| error.to_string())?;
        let mut command = Command::new(binary);
        match workers {
            Some(workers) => command.env("TOKIO_WORKER_THREADS", workers.to_string()),
            None => command.env_remove("TOKIO_WORKER_THREADS"),
        };
        let mut child = command
            .arg("up")
            .arg("--config")
            .arg(&config)
            .args(extra)
            .args([
                "--listen-directory",
                "127.0.0.1:0",
                "--listen-directory-mtls",
                "127.0.0.1:0",
            ])
            .args([
                "--listen-authz",
                "127.0.0.1:0",
                "--listen-cards",
                "127.0.0.1:0",
                "--listen-ops",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data)
            .env("CERTBOUND_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                format!(
                    "cannot start {}: {error} (build it: cargo build --release)",
                    binary.display()
                )
            })?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut reader = BufReader::new(stdout);
        let mut urls = Vec::new();
        loop {
            let mut line = String::new();
            if reader
                .read_line(&mut line)
                .map_err(|error| error.to_string())?
                == 0
            {
                return Err("certbound up exited before it was ready".into());
            }
            if line.starts_with("Stop with Ctrl-C") {
                break;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let Some((url, label)) = parts
                .split_last()
                .filter(|(url, _)| url.starts_with("https://"))
            {
                urls.push((label.join(" "), (*url).to_owned()));
            }
        }
        std::thread::spawn(move || for _ in reader.lines() {});
        Ok(Self { child, urls })
    }

    /// Wraps an already spawned peer.
    pub(crate) fn peer(child: Child) -> Self {
        Self {
            child,
            urls: Vec::new(),
        }
    }

    /// A printed URL.
    pub(crate) fn url(&self, label: &str) -> Result<String, String> {
        self.urls
            .iter()
            .find(|(name, _)| name == label)
            .map(|(_, url)| url.clone())
            .ok_or(format!("no {label} URL"))
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Seconds of CPU (user + system) the process has used so far.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at field 3.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15: indexes 11 and 12 here. Children are not counted.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}
