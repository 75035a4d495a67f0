//! The durable-write floor: a used `jti` is on stable storage before its token is answered
//! (DESIGN.md section 7), so no token is answered sooner than the disk takes to write a block
//! for good, and a disk that now and then takes tens of milliseconds to do so puts those
//! milliseconds into the tokens' tail. This measures that disk where the server keeps its data:
//! 4 KiB writes, back to back, into a preallocated zero-filled file opened with
//! `O_DIRECT | O_DSYNC` (`O_DSYNC` alone where the filesystem refuses `O_DIRECT`, as tmpfs does),
//! as the server's log of used ids writes a batch (`store/src/jti_log.rs`).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::load::Stats;
use crate::server::cpu_seconds;

/// What one write carries, aligned as `O_DIRECT` needs.
const BLOCK: usize = 4096;

/// Blocks in the file, written in turn.
const BLOCKS: u64 = 256;

/// One block, aligned for `O_DIRECT`.
#[repr(C, align(4096))]
struct Block([u8; BLOCK]);

/// The writes' latencies, and what they cost this process.
pub(crate) struct Measured {
    pub(crate) stats: Stats,
    /// This process's CPU per write (user and kernel): the kernel's cost of one durable write.
    pub(crate) cpu_per_write_us: f64,
    /// Whether the writes went around the page cache (`O_DIRECT`).
    pub(crate) direct: bool,
}

/// Writes blocks durably into a file in `directory` for `duration`, then deletes the file.
pub(crate) fn measure(directory: &Path, duration: Duration) -> Result<Measured, String> {
    let path = directory.join("durable-write.probe");
    let measured = measure_at(&path, duration)
        .map_err(|error| format!("the durable writes at {}: {error}", path.display()));
    let _ = std::fs::remove_file(&path);
    measured
}

fn measure_at(path: &Path, duration: Duration) -> std::io::Result<Measured> {
    let mut block = Box::new(Block([0; BLOCK]));
    // Made whole and synced first, as the log makes its segments: no timed write allocates.
    let file = File::create(path)?;
    for n in 0..BLOCKS {
        file.write_all_at(&block.0, n * BLOCK as u64)?;
    }
    file.sync_all()?;
    drop(file);
    let open = |flags| {
        OpenOptions::new()
            .write(true)
            .custom_flags(flags)
            .open(path)
    };
    let (file, direct) = match open(libc::O_DIRECT | libc::O_DSYNC) {
        Ok(file) => (file, true),
        Err(_) => (open(libc::O_DSYNC)?, false),
    };
    let pid = std::process::id();
    let mut latencies_us = Vec::new();
    let cpu_before = cpu_seconds(pid);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        // Each write carries new bytes, as the log's block being filled does.
        for (slot, byte) in block.0.iter_mut().zip(n.to_le_bytes()) {
            *slot = byte;
        }
        let began = Instant::now();
        file.write_all_at(&block.0, (n % BLOCKS) * BLOCK as u64)?;
        latencies_us.push(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
        n += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    latencies_us.sort_unstable();
    Ok(Measured {
        cpu_per_write_us: if n > 0 { cpu * 1e6 / n as f64 } else { 0.0 },
        stats: Stats {
            requests: latencies_us.len(),
            errors: 0,
            seconds,
            latencies_us,
            first_error: None,
        },
        direct,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    /// Every write is timed, and the file is gone afterwards.
    #[test]
    fn durable_writes_are_timed_and_leave_nothing_behind() {
        let directory = tempfile::tempdir().unwrap();
        let measured = measure(directory.path(), Duration::from_millis(50)).unwrap();
        assert!(measured.stats.requests > 0);
        assert_eq!(measured.stats.latencies_us.len(), measured.stats.requests);
        assert!(measured.stats.latencies_us.is_sorted());
        assert!(
            std::fs::read_dir(directory.path())
                .unwrap()
                .next()
                .is_none()
        );
    }
}
