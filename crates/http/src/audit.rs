//! The audit trail: security events as JSON lines in `DATA_DIR/audit.jsonl`.
//!
//! What an unauthenticated client can make it hold is bounded: every string field is cut to
//! [`MAX_FIELD`] bytes (a 48 KiB path is recorded as its first 256 bytes and its length), and the
//! file rotates by size and by age ([`Rotation`]), keeping a bounded number of old files
//! (`audit.jsonl.1` the newest). Every line is written whole, with one `write` call, under the
//! lock that rotation takes too.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::response::Response;

use crate::{ClientAddress, InternalError, PeerCertificate, Refusal, TRACE_ID};

/// The longest string field of a record, in bytes.
pub(crate) const MAX_FIELD: usize = 256;

/// When the audit trail starts a new file, and how many old ones it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Start a new file before this one would grow past this many bytes.
    pub max_bytes: u64,
    /// Start a new file once this one is this many seconds old.
    pub max_age_seconds: i64,
    /// Old files kept (`audit.jsonl.1` ... `.N`); older ones are deleted.
    pub keep: u32,
}

impl Default for Rotation {
    /// 64 MiB or a day, seven old files: at most 512 MiB of audit trail.
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            max_age_seconds: 86_400,
            keep: 7,
        }
    }
}

#[derive(Debug)]
struct Sink {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    /// When the current file was started (the first record written to it).
    started: Option<i64>,
    rotation: Rotation,
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl Sink {
    fn write(&mut self, line: &[u8], now: i64) -> std::io::Result<()> {
        let too_big = self.size > 0 && self.size + line.len() as u64 > self.rotation.max_bytes;
        let too_old = self
            .started
            .is_some_and(|started| now - started >= self.rotation.max_age_seconds);
        if too_big || too_old {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        self.started.get_or_insert(now);
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.rotation.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.rotation.keep));
            for n in (1..self.rotation.keep).rev() {
                if numbered(n).exists() {
                    std::fs::rename(numbered(n), numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        self.started = None;
        Ok(())
    }
}

/// Cuts every string in `value` to [`MAX_FIELD`] bytes (at a character boundary), noting the
/// length it had.
fn bounded(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::String(text) if text.len() > MAX_FIELD => {
            let mut end = MAX_FIELD;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            serde_json::Value::String(format!(
                "{}...({} bytes)",
                text.get(..end).unwrap_or_default(),
                text.len()
            ))
        }
        serde_json::Value::Object(map) => {
            serde_json::Value::Object(map.into_iter().map(|(k, v)| (k, bounded(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().take(32).map(bounded).collect())
        }
        other => other,
    }
}

/// The audit trail: security events as JSON lines (one object per line), appended to a file.
/// Records carry ids, thumbprints, reason codes and trace ids, never a secret: callers pass only
/// those, and refusals carry the description already sent to the client.
#[derive(Clone, Debug, Default)]
pub struct AuditLog {
    sink: Option<Arc<Mutex<Sink>>>,
}

impl AuditLog {
    /// Appends to `path` (created 0600), rotating as [`Rotation::default`] says.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::open_rotating(path, Rotation::default())
    }

    /// Appends to `path` (created 0600), rotating as `rotation` says. A file left by an earlier
    /// run counts from now for its age.
    pub fn open_rotating(path: &Path, rotation: Rotation) -> std::io::Result<Self> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            sink: Some(Arc::new(Mutex::new(Sink {
                path: path.to_path_buf(),
                file,
                size,
                started: None,
                rotation,
            }))),
        })
    }

    /// A log that records nothing.
    pub fn disabled() -> Self {
        Self { sink: None }
    }

    /// Records `event` of `part` with `fields` (an object of ids, codes, thumbprints), every
    /// string cut to [`MAX_FIELD`] bytes.
    pub fn record(&self, part: &str, event: &str, now: i64, fields: serde_json::Value) {
        let Some(sink) = &self.sink else { return };
        let mut line = serde_json::json!({"ts": now, "part": part, "event": event});
        if let (serde_json::Value::Object(line), serde_json::Value::Object(fields)) =
            (&mut line, bounded(fields))
        {
            line.extend(fields.into_iter().filter(|(_, value)| !value.is_null()));
        }
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        let Ok(mut sink) = sink.lock() else { return };
        if let Err(error) = sink.write(&bytes, now) {
            tracing::error!(%error, "the audit trail could not be written");
        }
    }

    /// Wraps `router` so every refused request is recorded (see [`AuditLog::refusals`]);
    /// `now` reads the clock at the edge.
    pub fn audited<S: Clone + Send + Sync + 'static>(
        &self,
        router: axum::Router<S>,
        part: &'static str,
        now: fn() -> i64,
    ) -> axum::Router<S> {
        let audit = self.clone();
        router.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let audit = audit.clone();
                async move { audit.refusals(part, now(), request, next).await }
            },
        ))
    }

    /// The edge of a service, for `axum::middleware::from_fn`: gives the request its trace id
    /// ([`trace_id`]) for everything that answers it, sends it back as `X-Trace-Id`, records every
    /// refusal (a response carrying a [`Refusal`]) with the request's method, path, source
    /// address and certificate thumbprint, and logs every internal failure ([`InternalError`]).
    pub async fn refusals(
        &self,
        part: &'static str,
        now: i64,
        request: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> Response {
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let address = request
            .extensions()
            .get::<ClientAddress>()
            .map(|address| address.0.ip().to_string());
        let thumbprint = request
            .extensions()
            .get::<PeerCertificate>()
            .map(|peer| peer.thumbprint.to_string());
        let trace_id = uuid::Uuid::new_v4().to_string();
        let mut response = TRACE_ID.scope(trace_id.clone(), next.run(request)).await;
        if let Ok(value) = axum::http::HeaderValue::from_str(&trace_id) {
            response.headers_mut().insert("x-trace-id", value);
        }
        if let Some(InternalError(detail)) = response.extensions().get::<InternalError>() {
            tracing::error!(part, %trace_id, %method, %path, detail, "internal error");
        }
        if let Some(refusal) = response.extensions().get::<Refusal>().cloned() {
            self.record(
                part,
                "refused",
                now,
                serde_json::json!({
                    "status": response.status().as_u16(),
                    "reason": refusal.code,
                    "description": refusal.description,
                    "method": method,
                    "path": path,
                    "address": address,
                    "thumbprint": thumbprint,
                    "trace_id": trace_id,
                }),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_default())
            .collect()
    }

    #[test]
    fn fields_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = AuditLog::open(&path).unwrap();
        let long = "é".repeat(30_000);
        audit.record(
            "cards",
            "refused",
            1,
            serde_json::json!({"path": long, "nested": {"x": long}}),
        );
        let size = std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or_default();
        assert!(size < 1_024, "a 60 KB field made a {size}-byte record");
        let record = lines(&path).pop().unwrap_or_default();
        let path_field = record["path"].as_str().unwrap_or_default();
        assert!(path_field.ends_with("...(60000 bytes)"), "{path_field}");
        assert!(record["nested"]["x"].as_str().unwrap_or_default().len() < 300);
    }

    #[test]
    fn the_trail_rotates_by_size_and_age_and_keeps_a_bounded_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotation = Rotation {
            max_bytes: 200,
            max_age_seconds: 100,
            keep: 2,
        };
        let audit = AuditLog::open_rotating(&path, rotation).unwrap();
        for n in 0..20 {
            audit.record("authz", "token_issued", 10, serde_json::json!({"n": n}));
        }
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        assert!(numbered(1).exists() && numbered(2).exists());
        assert!(!numbered(3).exists(), "only two old files are kept");
        for file in [path.clone(), numbered(1), numbered(2)] {
            let size = std::fs::metadata(&file)
                .map(|m| m.len())
                .unwrap_or(u64::MAX);
            assert!(size <= 200, "{} is {size} bytes", file.display());
            assert!(
                lines(&file)
                    .iter()
                    .all(|line| line["event"] == "token_issued"),
                "whole lines only"
            );
        }
        assert_eq!(
            lines(&path).last().map(|line| line["n"].clone()),
            Some(serde_json::json!(19))
        );
        // By age: the next record after max_age starts a new file.
        let before = lines(&path).len();
        audit.record(
            "authz",
            "token_issued",
            10 + 100,
            serde_json::json!({"n": "late"}),
        );
        assert_eq!(
            lines(&path).len(),
            1,
            "a {before}-line file older than a day was kept"
        );
        assert_eq!(lines(&numbered(1)).len(), before);
    }
}
