//! The durable-write floor: with SQLite, a used `jti` is on stable storage in the serving
//! process's log before its token is answered (DESIGN.md section 7), so no token is answered
//! sooner than the disk takes to write a block for good, and a disk that now and then takes tens
//! of milliseconds to do so puts those milliseconds into the tokens' tail. This measures the
//! filesystem of the server's data dir (under `TMPDIR`, which decides whether it is a disk at
//! all: the printed line names the filesystem): 4 KiB writes into a preallocated zero-filled file
//! opened with `O_DIRECT | O_DSYNC` (`O_DSYNC` alone where the filesystem refuses `O_DIRECT`),
//! as the log writes a batch (`store/src/jti_log.rs`).
//!
//! The writes go back to back, never paced: one writer as fast as the disk takes it, which is a
//! worst case for the tail (the server writes at most one batch per commit, at or below its token
//! rate); the median is a fair floor.

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
    /// This process's CPU time (user and system) per write. Work done for the write elsewhere
    /// (the completion's interrupt on another CPU, the hypervisor) is not in it.
    pub(crate) cpu_per_write_us: f64,
    /// Whether the writes went around the page cache (`O_DIRECT`).
    pub(crate) direct: bool,
    /// The data dir's filesystem type, from `/proc/self/mountinfo` (`None` if not found there).
    pub(crate) filesystem: Option<String>,
}

/// Writes blocks durably into a file in `directory` for `duration` (at least one write), then
/// deletes the file, whether or not the writes succeeded.
pub(crate) fn measure(directory: &Path, duration: Duration) -> Result<Measured, String> {
    let path = directory.join("durable-write.probe");
    let measured = measure_at(&path, duration)
        .map_err(|error| format!("the durable writes at {}: {error}", path.display()));
    let _ = std::fs::remove_file(&path);
    measured.map(|measured| Measured {
        filesystem: filesystem_of(directory),
        ..measured
    })
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
    let refused = |error: &std::io::Error| error.raw_os_error() == Some(libc::EINVAL);
    // A filesystem that does not take O_DIRECT refuses it when the file is opened, or with the
    // first write: either way EINVAL, and only then are the writes made without it.
    let direct_first_write = open(libc::O_DIRECT | libc::O_DSYNC)
        .and_then(|file| file.write_all_at(&block.0, 0).map(|()| file));
    let (file, direct) = match direct_first_write {
        Ok(file) => (file, true),
        Err(error) if refused(&error) => (open(libc::O_DSYNC)?, false),
        Err(error) => return Err(error),
    };
    let pid = std::process::id();
    let mut latencies_us = Vec::new();
    let cpu_before = cpu_seconds(pid);
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        // Each write carries new bytes, as the log's block being filled does.
        for (slot, byte) in block.0.iter_mut().zip(n.to_le_bytes()) {
            *slot = byte;
        }
        let began = Instant::now();
        file.write_all_at(&block.0, (n % BLOCKS) * BLOCK as u64)?;
        latencies_us.push(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
        n += 1;
        if start.elapsed() >= duration {
            break;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    latencies_us.sort_unstable();
    Ok(Measured {
        cpu_per_write_us: cpu * 1e6 / n as f64,
        stats: Stats {
            requests: latencies_us.len(),
            errors: 0,
            seconds,
            latencies_us,
            first_error: None,
        },
        direct,
        filesystem: None,
    })
}

/// The type of the filesystem that holds `directory`: the mount in `/proc/self/mountinfo` with
/// the longest mount point that contains it.
fn filesystem_of(directory: &Path) -> Option<String> {
    let directory = directory.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            // `id parent major:minor root mount-point options [optional...] - type source ...`
            let (before, after) = line.split_once(" - ")?;
            let mount_point = before.split(' ').nth(4)?.replace("\\040", " ");
            let kind = after.split(' ').next()?;
            directory
                .starts_with(&mount_point)
                .then(|| (mount_point.len(), kind.to_owned()))
        })
        .max_by_key(|(length, _)| *length)
        .map(|(_, kind)| kind)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    /// Every write is timed (at least one, however short the time), the data dir's filesystem
    /// is named, and the file is gone afterwards.
    #[test]
    fn durable_writes_are_timed_and_leave_nothing_behind() {
        let directory = tempfile::tempdir().unwrap();
        for duration in [Duration::ZERO, Duration::from_millis(50)] {
            let measured = measure(directory.path(), duration).unwrap();
            assert!(measured.stats.requests > 0);
            assert_eq!(measured.stats.latencies_us.len(), measured.stats.requests);
            assert!(measured.stats.latencies_us.is_sorted());
            assert!(measured.filesystem.is_some_and(|kind| !kind.is_empty()));
            assert!(
                std::fs::read_dir(directory.path())
                    .unwrap()
                    .next()
                    .is_none()
            );
        }
    }

    /// A directory that cannot hold the file is an error that names the file, not a figure.
    #[test]
    fn a_directory_that_is_not_there_is_an_error() {
        let directory = tempfile::tempdir().unwrap();
        let missing = directory.path().join("missing");
        let error = measure(&missing, Duration::ZERO).err().unwrap();
        assert!(error.contains("durable-write.probe"), "{error}");
        assert!(!missing.exists());
    }

    /// The root directory is on the filesystem mounted at `/`.
    #[test]
    fn the_root_is_on_some_filesystem() {
        assert!(filesystem_of(Path::new("/")).is_some());
    }
}
