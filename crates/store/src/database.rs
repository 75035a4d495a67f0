//! The SQL implementation of the store traits, over sqlx's `Any` driver so one set of queries
//! serves SQLite and PostgreSQL. Queries use `$n` placeholders, which both accept.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::card_memory::{CardMemory, Lookup, Touched};
use crate::records::{
    AccessTokenRecord, Announce, AuthorisationChange, AuthorisationRecord, AuthzStore, BulkCard,
    BulkJobRecord, CardRecord, CardsStore, CertificateRecord, ClientRecord, DirectoryStore,
    IdempotencyRecord, KeyMaterialRecord, KeyMaterialStore, NotificationDraft, NotificationRecord,
    OrganisationRecord, Posted, Posting, RateLimitStore, ReplayStore, SigningKeyRecord,
    SoftwareStatementRecord, TokenReference, TokenStanding, TokenStandingStore, TransactionLine,
};

/// Embedded migrations, applied in order at start.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "directory",
        include_str!("../migrations/0001_directory.sql"),
    ),
    (2, "authz", include_str!("../migrations/0002_authz.sql")),
    (3, "cards", include_str!("../migrations/0003_cards.sql")),
    (
        4,
        "rate limits",
        include_str!("../migrations/0004_rate_limits.sql"),
    ),
    (
        5,
        "registration id",
        include_str!("../migrations/0005_registration_id.sql"),
    ),
    (
        6,
        "card versions",
        include_str!("../migrations/0006_card_versions.sql"),
    ),
    (
        7,
        "idempotent effects",
        include_str!("../migrations/0007_idempotent_effects.sql"),
    ),
    (
        8,
        "bulk leases",
        include_str!("../migrations/0008_bulk_leases.sql"),
    ),
    (
        9,
        "trust changes",
        include_str!("../migrations/0009_trust_changes.sql"),
    ),
    (
        10,
        "certificates by key id",
        include_str!("../migrations/0010_certificates_by_key_id.sql"),
    ),
    (11, "ledger", include_str!("../migrations/0011_ledger.sql")),
    (
        12,
        "authorisations",
        include_str!("../migrations/0012_authorisations.sql"),
    ),
    (
        13,
        "webhooks",
        include_str!("../migrations/0013_webhooks.sql"),
    ),
    (
        14,
        "webhook retry window",
        include_str!("../migrations/0014_webhook_retry_window.sql"),
    ),
];

/// Infrastructure errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The URL names no supported database.
    #[error("unsupported database URL: use sqlite://PATH or postgres://...")]
    UnsupportedUrl,
    /// A group commit (of used `jti`s) failed; the message is the database's.
    #[error("database error: {0}")]
    GroupCommit(String),
    /// A sealed value could not be opened or sealed again (master key rotation); nothing was
    /// changed.
    #[error("{0}")]
    Reseal(String),
    /// Another process serves this embedded database (or its lock file cannot be taken).
    #[error(
        "the SQLite database {path} is in use by another certbound process ({reason}): stop it, \
         or run several instances on PostgreSQL (--database-url postgres://...)"
    )]
    InUse {
        /// The database file.
        path: String,
        /// What the lock said.
        reason: String,
    },
}

/// Where a sealed value lives, for [`Database::reseal_all`]: its table, row and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedValue<'a> {
    /// `key_material`, `token_signing_keys` or `cards`.
    pub table: &'static str,
    /// The row: a key material name, a signing key's `kid`, a card's public token.
    pub id: &'a str,
    /// `sealed`, or a card's `pan_sealed`, `cvv_sealed`, `pin_sealed`.
    pub column: &'static str,
}

/// The callback of [`Database::reseal_all`]: a sealed value in, the same value sealed anew out.
pub type Reseal<'r> = dyn Fn(SealedValue<'_>, &str) -> Result<String, String> + Sync + 'r;

/// Rows read per statement while resealing the cards.
const RESEAL_PAGE: i64 = 1000;

/// Which database is behind the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// The store: a pool and its backend.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// When this instance last deleted expired `jti`s and revocations: at most once a minute,
    /// so the token path does one write, not two.
    last_prune: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// Changes to a token's standing this process knows of without reading the trust counter:
    /// its own, and on PostgreSQL those the change feed announced (see
    /// [`TokenStandingStore::local_changes`]).
    local_changes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// This instance's name in the change feed's notifications (its own are not news to it).
    instance: std::sync::Arc<str>,
    /// The change feed's listener (PostgreSQL), stopped with the last handle of this store.
    _feed: Option<std::sync::Arc<crate::change_feed::Feed>>,
    /// Used `jti`s waiting for their commit.
    used_jti: crate::group_commit::GroupCommit,
    /// Acquisitions that found the pool exhausted.
    waits: std::sync::Arc<PoolWaits>,
    /// Cards read, remembered until written: only when [`Database::connect_serving`] made this
    /// process the embedded database's only server (see [`crate::card_memory`]).
    card_memory: Option<std::sync::Arc<CardMemory>>,
    /// The lock that keeps other processes from serving this SQLite file, while held.
    alone: std::sync::Arc<std::sync::Mutex<Option<std::fs::File>>>,
    /// The SQLite file (none in memory or on PostgreSQL).
    file: Option<std::path::PathBuf>,
}

/// Adds every record of the used jti log beside `file` to `used_jti` of the SQLite database
/// `copy` (a backup just made): a restored store then refuses those jtis as the original did.
fn copy_log_into(file: &std::path::Path, copy: &std::path::Path) -> Result<(), StoreError> {
    let failed = |error: &dyn std::fmt::Display| {
        StoreError::GroupCommit(format!(
            "cannot copy the used jti log beside {} into {}: {error}",
            file.display(),
            copy.display()
        ))
    };
    let records = crate::jti_log::records_beside(file).map_err(|error| failed(&error))?;
    if records.is_empty() {
        return Ok(());
    }
    let mut connection = rusqlite::Connection::open(copy).map_err(|error| failed(&error))?;
    let transaction = connection.transaction().map_err(|error| failed(&error))?;
    {
        let mut insert = transaction
            .prepare(
                "INSERT INTO used_jti (id, expires_at) VALUES (?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)",
            )
            .map_err(|error| failed(&error))?;
        for (key, expires_at) in &records {
            insert
                .execute(rusqlite::params![crate::jti_log::row_id(key), expires_at])
                .map_err(|error| failed(&error))?;
        }
    }
    transaction.commit().map_err(|error| failed(&error))
}

/// Counts the times a query had to wait for a connection: none was idle and the pool was at its
/// maximum when it asked. (sqlx keeps no such count; every query of this store asks through
/// [`Database::counted`].)
#[derive(Debug, Default)]
pub(crate) struct PoolWaits {
    count: std::sync::atomic::AtomicU64,
}

impl PoolWaits {
    /// Notes an acquisition from `pool` about to happen.
    pub(crate) fn note(&self, pool: &AnyPool) {
        if pool.num_idle() == 0 && pool.size() >= pool.options().get_max_connections() {
            self.count
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A name for this instance in the change feed: 16 random bytes, hex.
fn random_instance_name() -> String {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // Without randomness the name is the process id: own notifications may then be taken
        // for another's, which costs an emptied memory, never a stale one.
        return format!("pid-{}", std::process::id());
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Takes the exclusive lock that makes this process the only server of the SQLite `file`.
fn lock_alone(file: &std::path::Path) -> Result<std::fs::File, StoreError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut name = file.to_path_buf().into_os_string();
    name.push(".lock");
    let in_use = |reason: String| StoreError::InUse {
        path: file.display().to_string(),
        reason,
    };
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&name)
        .map_err(|error| in_use(format!("{}: {error}", name.to_string_lossy())))?;
    lock.try_lock().map_err(|error| match error {
        std::fs::TryLockError::WouldBlock => {
            in_use(format!("{} is locked", name.to_string_lossy()))
        }
        std::fs::TryLockError::Error(error) => {
            in_use(format!("{}: {error}", name.to_string_lossy()))
        }
    })?;
    Ok(lock)
}

/// The file of a `sqlite:` URL (`sqlite://PATH?options`) as sqlx opens it (percent-decoded),
/// `None` for PostgreSQL and for a database in memory. The server's lock and the used-jti
/// commits' connection both name the file this way, so they find the one sqlx opened.
fn sqlite_file(url: &str) -> Result<Option<std::path::PathBuf>, StoreError> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(None);
    };
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(":memory:") || url.contains("mode=memory") {
        return Ok(None);
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
    Ok(Some(options.get_filename().to_path_buf()))
}

/// How often expired rows are pruned, seconds.
const PRUNE_INTERVAL: i64 = 60;

impl Database {
    /// Connects (creating a SQLite file if needed) and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut database = Self::open(url).await?;
        if let Some(file) = &database.file {
            database.used_jti = crate::group_commit::GroupCommit::on_thread(file)?;
        }
        Ok(database)
    }

    /// [`Database::connect`] but for who commits the used `jti`s on an embedded file (the
    /// caller's choice): the pool, migrated.
    async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let options = AnyConnectOptions::from_str(url)?;
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(4)
                    // A connection to a file cannot have been lost while idle: sqlx's check of
                    // each connection taken from the pool (a trip to its thread and back before
                    // every query) finds nothing here.
                    .test_before_acquire(false)
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            // WAL with synchronous=FULL: an acknowledged write survives kill -9
                            // and power loss; busy_timeout lets writers queue instead of failing.
                            connection
                                .execute(
                                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
                                     PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000;",
                                )
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            // An instance stalled in a transaction (SIGSTOP, a frozen VM) must not
                            // hold its row locks for ever: the server ends such a session after
                            // 10 s (its locks go, its next statement fails), and nobody waits for
                            // a lock longer than 5 s (the statement fails and is retried).
                            connection
                                .execute(
                                    "SET idle_in_transaction_session_timeout = '10s'; \
                                     SET lock_timeout = '5s';",
                                )
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
        };
        let local_changes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let instance: std::sync::Arc<str> = random_instance_name().into();
        let feed = (backend == Backend::Postgres).then(|| {
            std::sync::Arc::new(crate::change_feed::listen(
                url,
                instance.to_string(),
                local_changes.clone(),
            ))
        });
        let database = Self {
            pool,
            backend,
            last_prune: Default::default(),
            local_changes,
            instance,
            _feed: feed,
            used_jti: Default::default(),
            waits: Default::default(),
            card_memory: None,
            alone: Default::default(),
            file: sqlite_file(url)?,
        };
        database.migrate().await?;
        Ok(database)
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for tests and diagnostics.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for one of this store's queries, counting the query as a wait if it will have
    /// to wait for a connection.
    fn counted(&self) -> &AnyPool {
        self.waits.note(&self.pool);
        &self.pool
    }

    /// Connects as the only server of an embedded (SQLite) database, so that it may remember
    /// card records (see [`crate::card_memory`]): an exclusive lock on `<file>.lock` (0600,
    /// beside the database) is taken before the database is opened or migrated, and held until
    /// [`Database::stop_serving`] or the last handle of this store goes; a second server of the
    /// same file, or a tool that rewrites it (`master-key rotate`), is refused with
    /// [`StoreError::InUse`]. Tools that read beside a running server (backups) use
    /// [`Database::connect`]. On PostgreSQL, which any number of instances share, this is
    /// [`Database::connect`].
    pub async fn connect_serving(url: &str) -> Result<Self, StoreError> {
        let file = sqlite_file(url)?;
        let lock = file.as_deref().map(lock_alone).transpose()?;
        // Not `connect`: the used jtis of the file's server go to its log, not to a thread of
        // its own connection to the file.
        let mut database = Self::open(url).await?;
        if database.backend == Backend::Sqlite {
            *database
                .alone
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = lock;
            database.card_memory = Some(Default::default());
        }
        if let Some(file) = file {
            // The used jtis go to this process's log (it alone writes the file now), which
            // starts from the log's records and the table's rows.
            let rows = sqlx::query("SELECT id, expires_at FROM used_jti")
                .fetch_all(&database.pool)
                .await?
                .iter()
                .map(|row| {
                    Ok((
                        row.try_get::<String, _>("id")?,
                        row.try_get::<i64, _>("expires_at")?,
                    ))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let log = crate::jti_log::JtiLog::open(&file, rows).map_err(|error| {
                StoreError::GroupCommit(format!(
                    "cannot open the used jti log beside {}: {error}",
                    file.display()
                ))
            })?;
            database.used_jti =
                crate::group_commit::GroupCommit::on_log(log, database.alone.clone())?;
        }
        Ok(database)
    }

    /// This process stops serving the database (its stack has shut down): the lock taken by
    /// [`Database::connect_serving`] is released, even while handles of this store live on in
    /// tasks that are still ending, so the same file can be served again at once.
    pub fn stop_serving(&self) {
        // Nothing of this store writes the used jti log once another may serve the file.
        self.used_jti.stop();
        drop(
            self.alone
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
    }

    /// Cards found in this process's memory and read from the database since the start (none on
    /// PostgreSQL, which keeps no card memory).
    pub fn card_lookups(&self) -> (u64, u64) {
        self.card_memory
            .as_ref()
            .map_or((0, 0), |memory| memory.lookups())
    }

    /// Runs `write`, a write of the `touched` cards, forgetting them from the card memory once
    /// it has ended (and, if it is abandoned half way, until its transaction surely has).
    async fn writing_cards<T>(
        &self,
        touched: Touched<'_>,
        write: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let Some(memory) = &self.card_memory else {
            return write.await;
        };
        let writing = memory.writing(&self.pool, touched);
        let result = write.await;
        writing.ended();
        result
    }

    /// Queries that had to wait for a connection since the start (the pool was exhausted).
    pub fn pool_waits(&self) -> u64 {
        self.waits.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The commits of used `jti`s since the start, by committer, and the ids they carried.
    pub fn used_jti_commits(&self) -> crate::UsedJtiCommits {
        self.used_jti.commits()
    }

    /// Opens every sealed value the database holds (key material, token signing keys, cards'
    /// PAN, CVV and PIN) and writes what `reseal` makes of it, all in one transaction: either
    /// every value is sealed anew or, on the first failure, nothing changed. The number of
    /// values resealed.
    pub async fn reseal_all(&self, reseal: &Reseal<'_>) -> Result<u64, StoreError> {
        self.writing_cards(Touched::All, self.reseal_all_now(reseal))
            .await
    }

    async fn reseal_all_now(&self, reseal: &Reseal<'_>) -> Result<u64, StoreError> {
        let apply = |value: SealedValue<'_>, sealed: &str| {
            reseal(value, sealed).map_err(|error| {
                StoreError::Reseal(format!(
                    "{} {} ({}): {error}",
                    value.table, value.id, value.column
                ))
            })
        };
        let mut transaction = self.counted().begin().await?;
        let mut count = 0u64;
        for (table, id_column) in [("key_material", "name"), ("token_signing_keys", "kid")] {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {id_column}, sealed FROM {table}"
            )))
            .fetch_all(&mut *transaction)
            .await?;
            for row in rows {
                let id: String = row.try_get(0)?;
                let sealed: String = row.try_get(1)?;
                let value = SealedValue {
                    table,
                    id: &id,
                    column: "sealed",
                };
                let resealed = apply(value, &sealed)?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET sealed = $1 WHERE {id_column} = $2"
                )))
                .bind(resealed)
                .bind(&id)
                .execute(&mut *transaction)
                .await?;
                count += 1;
            }
        }
        let mut after = String::new();
        loop {
            let rows = sqlx::query(
                "SELECT public_token, pan_sealed, cvv_sealed, pin_sealed FROM cards \
                 WHERE public_token > $1 ORDER BY public_token LIMIT $2",
            )
            .bind(&after)
            .bind(RESEAL_PAGE)
            .fetch_all(&mut *transaction)
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get(0)?;
            for row in rows {
                let token: String = row.try_get(0)?;
                let mut columns = Vec::with_capacity(3);
                for (index, column) in [(1, "pan_sealed"), (2, "cvv_sealed"), (3, "pin_sealed")] {
                    let sealed: Option<String> = row.try_get(index)?;
                    let resealed = match sealed {
                        Some(sealed) => {
                            count += 1;
                            let value = SealedValue {
                                table: "cards",
                                id: &token,
                                column,
                            };
                            Some(apply(value, &sealed)?)
                        }
                        None => None,
                    };
                    columns.push(resealed);
                }
                let mut columns = columns.into_iter();
                sqlx::query(
                    "UPDATE cards SET pan_sealed = $1, cvv_sealed = $2, pin_sealed = $3, \
                     version = version + 1 WHERE public_token = $4",
                )
                .bind(columns.next().flatten())
                .bind(columns.next().flatten())
                .bind(columns.next().flatten())
                .bind(&token)
                .execute(&mut *transaction)
                .await?;
            }
        }
        transaction.commit().await?;
        Ok(count)
    }

    /// SQLite: writes a consistent copy of the database into `path` (which must not exist or
    /// be empty) while others go on writing: `VACUUM INTO` reads one snapshot.
    pub async fn copy_into(&self, path: &std::path::Path) -> Result<(), StoreError> {
        sqlx::query("VACUUM INTO $1")
            .bind(path.display().to_string())
            .execute(self.counted())
            .await?;
        // The used jtis of the process serving the file are in its log, not in the copy: they
        // go into the copy's `used_jti` (read after the copy was made, so none is missed).
        if let Some(file) = self.file.clone() {
            let copy = path.to_path_buf();
            tokio::task::spawn_blocking(move || copy_log_into(&file, &copy))
                .await
                .map_err(|error| StoreError::GroupCommit(error.to_string()))??;
        }
        Ok(())
    }

    /// Every key material record's name and sealed value (to check a master key against).
    pub async fn sealed_key_material(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT name, sealed FROM key_material ORDER BY name")
            .fetch_all(self.counted())
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// Whether the database answers a query (readiness; the caller bounds the wait).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.counted()).await?;
        Ok(())
    }

    /// Connections of the pool in use, idle, and its maximum.
    pub fn pool_connections(&self) -> (u32, u32, u32) {
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        let size = self.pool.size();
        (
            size.saturating_sub(idle),
            idle,
            self.pool.options().get_max_connections(),
        )
    }

    /// Bulk card jobs by status (`Pending`, `Processing`, `Complete`, `Failed`).
    pub async fn bulk_jobs_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) FROM bulk_jobs GROUP BY status")
            .fetch_all(self.counted())
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?)))
            .collect()
    }

    /// Runs a write that may change a token's standing and, if it changed anything, bumps the
    /// trust counter in the same transaction (and this process's own count, at once).
    async fn changing_trust<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<u64, StoreError> {
        let mut transaction = self.counted().begin().await?;
        let affected = query.execute(&mut *transaction).await?.rows_affected();
        if affected > 0 {
            sqlx::query("UPDATE trust_changes SET version = version + 1 WHERE id = 1")
                .execute(&mut *transaction)
                .await?;
            if self.backend == Backend::Postgres {
                // Delivered to every listening instance at commit, and only then.
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(crate::change_feed::CHANNEL)
                    .bind(self.instance.to_string())
                    .execute(&mut *transaction)
                    .await?;
            }
        }
        transaction.commit().await?;
        if affected > 0 {
            self.local_changes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(affected)
    }

    /// Deletes expired `jti`s, revocations and rate-limit windows, at most once per interval.
    async fn prune(&self, now: i64) -> Result<(), StoreError> {
        if self.prune_due(now) {
            // Expired entries can go: their tokens are refused for `exp` before they get here.
            sqlx::query("DELETE FROM used_jti WHERE expires_at < $1")
                .bind(now)
                .execute(self.counted())
                .await?;
            sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
                .bind(now)
                .execute(self.counted())
                .await?;
            sqlx::query("DELETE FROM rate_limits WHERE window_start < $1")
                .bind(now - 3600)
                .execute(self.counted())
                .await?;
        }
        Ok(())
    }

    /// Whether this call should prune expired rows (true at most once per interval).
    fn prune_due(&self, now: i64) -> bool {
        use std::sync::atomic::Ordering;
        let last = self.last_prune.load(Ordering::Relaxed);
        now - last >= PRUNE_INTERVAL
            && self
                .last_prune
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut connection = self.counted().acquire().await?;
        if self.backend == Backend::Postgres {
            // Instances starting together take turns.
            connection
                .execute("SELECT pg_advisory_lock(7240001)")
                .await?;
        }
        let result = async {
            connection
                .execute(
                    "CREATE TABLE IF NOT EXISTS certbound_migrations \
                     (version BIGINT PRIMARY KEY, description TEXT NOT NULL)",
                )
                .await?;
            for (version, description, sql) in MIGRATIONS {
                let applied: Option<i64> = sqlx::query_scalar(
                    "SELECT version FROM certbound_migrations WHERE version = $1",
                )
                .bind(*version)
                .fetch_optional(&mut *connection)
                .await?;
                if applied.is_some() {
                    continue;
                }
                let mut transaction = sqlx::Connection::begin(&mut *connection).await?;
                sqlx::raw_sql(*sql).execute(&mut *transaction).await?;
                sqlx::query(
                    "INSERT INTO certbound_migrations (version, description) VALUES ($1, $2)",
                )
                .bind(*version)
                .bind(*description)
                .execute(&mut *transaction)
                .await?;
                transaction.commit().await?;
                tracing::info!(version, description, "applied migration");
            }
            Ok::<(), sqlx::Error>(())
        }
        .await;
        if self.backend == Backend::Postgres {
            connection
                .execute("SELECT pg_advisory_unlock(7240001)")
                .await?;
        }
        Ok(result?)
    }
}

/// The certificate columns, as a literal so queries stay `&'static str` (sqlx audits dynamic SQL).
macro_rules! certificate_columns {
    () => {
        "id, organisation_id, software_statement_id, certificate_type, key_id, \
         thumbprint, serial_hex, chain_pem, not_before, not_after, created_at, revoked_at"
    };
}

fn certificate(row: &AnyRow) -> Result<CertificateRecord, sqlx::Error> {
    certificate_prefixed(row, "")
}

/// A certificate read from columns named `{prefix}id`, `{prefix}organisation_id`... (a join).
fn certificate_prefixed(row: &AnyRow, prefix: &str) -> Result<CertificateRecord, sqlx::Error> {
    let column = |name: &str| format!("{prefix}{name}");
    Ok(CertificateRecord {
        id: row.try_get(column("id").as_str())?,
        organisation_id: row.try_get(column("organisation_id").as_str())?,
        software_statement_id: row.try_get(column("software_statement_id").as_str())?,
        certificate_type: row.try_get(column("certificate_type").as_str())?,
        key_id: row.try_get(column("key_id").as_str())?,
        thumbprint: row.try_get(column("thumbprint").as_str())?,
        serial_hex: row.try_get(column("serial_hex").as_str())?,
        chain_pem: row.try_get(column("chain_pem").as_str())?,
        not_before: row.try_get(column("not_before").as_str())?,
        not_after: row.try_get(column("not_after").as_str())?,
        created_at: row.try_get(column("created_at").as_str())?,
        revoked_at: row.try_get(column("revoked_at").as_str())?,
    })
}

fn organisation(row: &AnyRow) -> Result<OrganisationRecord, sqlx::Error> {
    Ok(OrganisationRecord {
        id: row.try_get("id")?,
        body: row.try_get("body")?,
        created_at: row.try_get("created_at")?,
    })
}

fn software_statement(row: &AnyRow) -> Result<SoftwareStatementRecord, sqlx::Error> {
    Ok(SoftwareStatementRecord {
        id: row.try_get("id")?,
        organisation_id: row.try_get("organisation_id")?,
        body: row.try_get("body")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl DirectoryStore for Database {
    async fn insert_organisation(&self, record: &OrganisationRecord) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO organisations (id, body, created_at) VALUES ($1, $2, $3)")
            .bind(&record.id)
            .bind(&record.body)
            .bind(record.created_at)
            .execute(self.counted())
            .await?;
        Ok(())
    }

    async fn organisation(&self, id: &str) -> Result<Option<OrganisationRecord>, StoreError> {
        let row = sqlx::query("SELECT id, body, created_at FROM organisations WHERE id = $1")
            .bind(id)
            .fetch_optional(self.counted())
            .await?;
        Ok(row.as_ref().map(organisation).transpose()?)
    }

    async fn organisations(&self) -> Result<Vec<OrganisationRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT id, body, created_at FROM organisations ORDER BY created_at, id")
                .fetch_all(self.counted())
                .await?;
        Ok(rows.iter().map(organisation).collect::<Result<_, _>>()?)
    }

    async fn insert_software_statement(
        &self,
        record: &SoftwareStatementRecord,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO software_statements (id, organisation_id, body, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&record.id)
            .bind(&record.organisation_id)
            .bind(&record.body)
            .bind(record.created_at)
            .execute(self.counted())
            .await?;
        Ok(())
    }

    async fn software_statement(
        &self,
        id: &str,
    ) -> Result<Option<SoftwareStatementRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, organisation_id, body, created_at FROM software_statements WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.counted())
        .await?;
        Ok(row.as_ref().map(software_statement).transpose()?)
    }

    async fn software_statements(
        &self,
        organisation_id: &str,
    ) -> Result<Vec<SoftwareStatementRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, organisation_id, body, created_at FROM software_statements \
             WHERE organisation_id = $1 ORDER BY created_at, id",
        )
        .bind(organisation_id)
        .fetch_all(self.counted())
        .await?;
        Ok(rows
            .iter()
            .map(software_statement)
            .collect::<Result<_, _>>()?)
    }

    async fn insert_certificate(&self, record: &CertificateRecord) -> Result<(), StoreError> {
        // A new certificate changes what instances remembering a key's certificates know.
        let query = sqlx::query(concat!(
            "INSERT INTO certificates (",
            certificate_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&record.id)
        .bind(&record.organisation_id)
        .bind(&record.software_statement_id)
        .bind(&record.certificate_type)
        .bind(&record.key_id)
        .bind(&record.thumbprint)
        .bind(&record.serial_hex)
        .bind(&record.chain_pem)
        .bind(record.not_before)
        .bind(record.not_after)
        .bind(record.created_at)
        .bind(record.revoked_at);
        self.changing_trust(query).await?;
        Ok(())
    }

    async fn certificate(&self, id: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            certificate_columns!(),
            " FROM certificates WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.counted())
        .await?;
        Ok(row.as_ref().map(certificate).transpose()?)
    }

    async fn certificate_by_thumbprint(
        &self,
        thumbprint: &str,
    ) -> Result<Option<CertificateRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            certificate_columns!(),
            " FROM certificates WHERE thumbprint = $1"
        ))
        .bind(thumbprint)
        .fetch_optional(self.counted())
        .await?;
        Ok(row.as_ref().map(certificate).transpose()?)
    }

    async fn certificates_by_key_id(
        &self,
        key_id: &str,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            certificate_columns!(),
            " FROM certificates WHERE key_id = $1"
        ))
        .bind(key_id)
        .fetch_all(self.counted())
        .await?;
        Ok(rows.iter().map(certificate).collect::<Result<_, _>>()?)
    }

    async fn certificates(
        &self,
        organisation_id: &str,
        software_statement_id: Option<&str>,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let query = match software_statement_id {
            Some(_) => concat!(
                "SELECT ",
                certificate_columns!(),
                " FROM certificates WHERE organisation_id = $1 AND software_statement_id = $2 ORDER BY created_at, id"
            ),
            None => concat!(
                "SELECT ",
                certificate_columns!(),
                " FROM certificates WHERE organisation_id = $1 AND software_statement_id IS NULL ORDER BY created_at, id"
            ),
        };
        let mut query = sqlx::query(query).bind(organisation_id);
        if let Some(id) = software_statement_id {
            query = query.bind(id);
        }
        let rows = query.fetch_all(self.counted()).await?;
        Ok(rows.iter().map(certificate).collect::<Result<_, _>>()?)
    }

    async fn revoke_certificate(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE certificates SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id);
        Ok(self.changing_trust(query).await? == 1)
    }

    async fn revoked_certificates(&self) -> Result<Vec<CertificateRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            certificate_columns!(),
            " FROM certificates WHERE revoked_at IS NOT NULL ORDER BY revoked_at, id"
        ))
        .fetch_all(self.counted())
        .await?;
        Ok(rows.iter().map(certificate).collect::<Result<_, _>>()?)
    }

    async fn insert_access_token(&self, record: &AccessTokenRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO access_tokens (token_hash, issuer, client_id, organisation_id, software_statement_id, \
             thumbprint, scope, issued_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&record.token_hash)
        .bind(&record.issuer)
        .bind(&record.client_id)
        .bind(&record.organisation_id)
        .bind(&record.software_statement_id)
        .bind(&record.thumbprint)
        .bind(&record.scope)
        .bind(record.issued_at)
        .bind(record.expires_at)
        .bind(record.revoked_at)
        .execute(self.counted())
        .await?;
        Ok(())
    }

    async fn access_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<AccessTokenRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT token_hash, issuer, client_id, organisation_id, software_statement_id, thumbprint, scope, \
             issued_at, expires_at, revoked_at FROM access_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.counted())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AccessTokenRecord {
            token_hash: row.try_get("token_hash")?,
            issuer: row.try_get("issuer")?,
            client_id: row.try_get("client_id")?,
            organisation_id: row.try_get("organisation_id")?,
            software_statement_id: row.try_get("software_statement_id")?,
            thumbprint: row.try_get("thumbprint")?,
            scope: row.try_get("scope")?,
            issued_at: row.try_get("issued_at")?,
            expires_at: row.try_get("expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
        }))
    }

    async fn next_counter(&self, name: &str) -> Result<i64, StoreError> {
        let value: i64 = sqlx::query_scalar(
            "INSERT INTO counters (name, value) VALUES ($1, 1) \
             ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
        )
        .bind(name)
        .fetch_one(self.counted())
        .await?;
        Ok(value)
    }
}

fn client(row: &AnyRow) -> Result<ClientRecord, sqlx::Error> {
    Ok(ClientRecord {
        client_id: row.try_get("client_id")?,
        software_id: row.try_get("software_id")?,
        organisation_id: row.try_get("organisation_id")?,
        metadata: row.try_get("metadata")?,
        registration_token_hash: row.try_get("registration_token_hash")?,
        registration_id: row.try_get("registration_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn signing_key(row: &AnyRow) -> Result<SigningKeyRecord, sqlx::Error> {
    Ok(SigningKeyRecord {
        kid: row.try_get("kid")?,
        sealed: row.try_get("sealed")?,
        public_jwk: row.try_get("public_jwk")?,
        created_at: row.try_get("created_at")?,
        activates_at: row.try_get("activates_at")?,
        retires_at: row.try_get("retires_at")?,
    })
}

#[async_trait]
impl AuthzStore for Database {
    async fn insert_client(&self, record: &ClientRecord) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "INSERT INTO oauth_clients (client_id, software_id, organisation_id, metadata, \
             registration_token_hash, created_at, updated_at, registration_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(&record.client_id)
        .bind(&record.software_id)
        .bind(&record.organisation_id)
        .bind(&record.metadata)
        .bind(&record.registration_token_hash)
        .bind(record.created_at)
        .bind(record.updated_at)
        .bind(&record.registration_id);
        Ok(self.changing_trust(query).await? == 1)
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT client_id, software_id, organisation_id, metadata, registration_token_hash, created_at, \
             updated_at, registration_id FROM oauth_clients WHERE client_id = $1 OR software_id = $1",
        )
        .bind(client_id)
        .fetch_optional(self.counted())
        .await?;
        Ok(row.as_ref().map(client).transpose()?)
    }

    async fn client_and_certificate(
        &self,
        client_id: &str,
        thumbprint: &str,
    ) -> Result<(Option<ClientRecord>, Option<CertificateRecord>), StoreError> {
        let row = sqlx::query(
            "SELECT c.client_id, c.software_id, c.organisation_id, c.metadata, c.registration_token_hash, \
             c.created_at, c.updated_at, c.registration_id, \
             t.id AS t_id, t.organisation_id AS t_organisation_id, t.software_statement_id AS t_software_statement_id, \
             t.certificate_type AS t_certificate_type, t.key_id AS t_key_id, t.thumbprint AS t_thumbprint, \
             t.serial_hex AS t_serial_hex, t.chain_pem AS t_chain_pem, t.not_before AS t_not_before, \
             t.not_after AS t_not_after, t.created_at AS t_created_at, t.revoked_at AS t_revoked_at \
             FROM (SELECT 1 AS one) AS anchor \
             LEFT JOIN oauth_clients c ON c.client_id = $1 OR c.software_id = $1 \
             LEFT JOIN certificates t ON t.thumbprint = $2",
        )
        .bind(client_id)
        .bind(thumbprint)
        .fetch_one(self.counted())
        .await?;
        let record = match row.try_get::<Option<String>, _>("client_id")? {
            Some(_) => Some(client(&row)?),
            None => None,
        };
        let certificate = match row.try_get::<Option<String>, _>("t_id")? {
            Some(_) => Some(certificate_prefixed(&row, "t_")?),
            None => None,
        };
        Ok((record, certificate))
    }

    async fn update_client(
        &self,
        client_id: &str,
        metadata: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        // The client's metadata decide its authentication: instances remembering it learn of
        // the change through the trust counter.
        let query = sqlx::query(
            "UPDATE oauth_clients SET metadata = $1, updated_at = $2 WHERE client_id = $3",
        )
        .bind(metadata)
        .bind(now)
        .bind(client_id);
        Ok(self.changing_trust(query).await? == 1)
    }

    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let query = sqlx::query("DELETE FROM oauth_clients WHERE client_id = $1").bind(client_id);
        Ok(self.changing_trust(query).await? == 1)
    }

    async fn insert_signing_key(&self, record: &SigningKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO token_signing_keys (kid, sealed, public_jwk, created_at, activates_at, retires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&record.kid)
        .bind(&record.sealed)
        .bind(&record.public_jwk)
        .bind(record.created_at)
        .bind(record.activates_at)
        .bind(record.retires_at)
        .execute(self.counted())
        .await?;
        Ok(())
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, sealed, public_jwk, created_at, activates_at, retires_at FROM token_signing_keys \
             ORDER BY activates_at, kid",
        )
        .fetch_all(self.counted())
        .await?;
        Ok(rows.iter().map(signing_key).collect::<Result<_, _>>()?)
    }

    async fn retire_signing_keys(&self, before: i64, retires_at: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE token_signing_keys SET retires_at = $1 WHERE activates_at < $2 AND retires_at IS NULL")
            .bind(retires_at)
            .bind(before)
            .execute(self.counted())
            .await?;
        Ok(())
    }

    async fn revoke_token(
        &self,
        jti: &str,
        client_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO revoked_tokens (jti, client_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(client_id)
        .bind(expires_at)
        .bind(now);
        self.changing_trust(query).await?;
        Ok(())
    }

    async fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT jti FROM revoked_tokens WHERE jti = $1")
                .bind(jti)
                .fetch_optional(self.counted())
                .await?;
        Ok(found.is_some())
    }
}

macro_rules! card_columns {
    () => {
        "public_token, organisation_id, client_id, details, pan_sealed, cvv_sealed, pin_sealed, \
         status_code, status_updated, cvv_blocked, created_at, updated_at, version, idempotency_id"
    };
}

macro_rules! bulk_columns {
    () => {
        "id, organisation_id, client_id, request, quantity, status, public_tokens, created_at, updated_at, \
         idempotency_id"
    };
}

fn card(row: &AnyRow) -> Result<CardRecord, sqlx::Error> {
    Ok(CardRecord {
        public_token: row.try_get("public_token")?,
        organisation_id: row.try_get("organisation_id")?,
        client_id: row.try_get("client_id")?,
        details: row.try_get("details")?,
        pan_sealed: row.try_get("pan_sealed")?,
        cvv_sealed: row.try_get("cvv_sealed")?,
        pin_sealed: row.try_get("pin_sealed")?,
        status_code: row.try_get("status_code")?,
        status_updated: row.try_get("status_updated")?,
        cvv_blocked: row.try_get::<i64, _>("cvv_blocked")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
        idempotency_id: row.try_get("idempotency_id")?,
        balance_minor: row.try_get("balance_minor")?,
        pending_minor: row.try_get("pending_minor")?,
    })
}

/// The conditional write of a card's mutable fields, its sealed PAN and CVV among them (a
/// renewal makes new ones), never its money.
fn update_card(record: &CardRecord) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "UPDATE cards SET details = $1, pin_sealed = $2, status_code = $3, status_updated = $4, \
         cvv_blocked = $5, updated_at = $6, pan_sealed = $7, cvv_sealed = $8, version = version + 1 \
         WHERE public_token = $9 AND version = $10",
    )
    .bind(&record.details)
    .bind(&record.pin_sealed)
    .bind(&record.status_code)
    .bind(&record.status_updated)
    .bind(i64::from(record.cvv_blocked))
    .bind(record.updated_at)
    .bind(&record.pan_sealed)
    .bind(&record.cvv_sealed)
    .bind(&record.public_token)
    .bind(record.version)
}

macro_rules! notification_columns {
    () => {
        "id, organisation_id, public_token, sequence, url, event_code, body, status, attempts, \
         next_attempt_at, last_error, created_at, delivered_at, first_attempt_at"
    };
}

fn notification(row: &AnyRow) -> Result<NotificationRecord, sqlx::Error> {
    Ok(NotificationRecord {
        draft: NotificationDraft {
            id: row.try_get("id")?,
            organisation_id: row.try_get("organisation_id")?,
            public_token: row.try_get("public_token")?,
            url: row.try_get("url")?,
            event_code: row.try_get("event_code")?,
            body: row.try_get("body")?,
            created_at: row.try_get("created_at")?,
        },
        sequence: row.try_get("sequence")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        delivered_at: row.try_get("delivered_at")?,
        first_attempt_at: row.try_get("first_attempt_at")?,
    })
}

/// Writes a notification in its card's order, in the transaction of the change it announces.
async fn insert_notification(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    draft: &NotificationDraft,
) -> Result<(), StoreError> {
    let sequence: i64 = sqlx::query_scalar(
        "UPDATE cards SET notification_seq = notification_seq + 1 WHERE public_token = $1 RETURNING notification_seq",
    )
    .bind(&draft.public_token)
    .fetch_one(&mut **transaction)
    .await?;
    sqlx::query(concat!(
        "INSERT INTO webhook_notifications (",
        notification_columns!(),
        ", lease, lease_until) VALUES ($1, $2, $3, $4, $5, $6, $7, 'Pending', 0, $8, NULL, $9, NULL, NULL, NULL, 0)"
    ))
    .bind(&draft.id)
    .bind(&draft.organisation_id)
    .bind(&draft.public_token)
    .bind(sequence)
    .bind(&draft.url)
    .bind(&draft.event_code)
    .bind(&draft.body)
    .bind(draft.created_at)
    .bind(draft.created_at)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

/// A floor no available balance goes below (every amount is at most 10^12 minor units).
const NO_FLOOR: i64 = -(1 << 62);
/// A ceiling no balance reaches.
const NO_CEILING: i64 = 1 << 62;

macro_rules! line_columns {
    () => {
        "id, public_token, organisation_id, line, type_code, status_code, transaction_type, \
         amount_minor, currency, actual_balance, available_balance, description, note, link, \
         processing_code, request_id, leg, created_at"
    };
}

fn transaction_line(row: &AnyRow) -> Result<TransactionLine, sqlx::Error> {
    Ok(TransactionLine {
        id: row.try_get("id")?,
        public_token: row.try_get("public_token")?,
        organisation_id: row.try_get("organisation_id")?,
        line: row.try_get("line")?,
        type_code: row.try_get("type_code")?,
        status_code: row.try_get("status_code")?,
        transaction_type: row.try_get("transaction_type")?,
        amount_minor: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        actual_balance: row.try_get("actual_balance")?,
        available_balance: row.try_get("available_balance")?,
        description: row.try_get("description")?,
        note: row.try_get("note")?,
        link: row.try_get("link")?,
        processing_code: row.try_get("processing_code")?,
        request_id: row.try_get("request_id")?,
        leg: row.try_get("leg")?,
        created_at: row.try_get("created_at")?,
    })
}

/// `INSERT` of a card (nothing if its public token or idempotency id is taken), for
/// `insert_card` and `record_bulk_card` alike.
fn insert_card(record: &CardRecord) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(concat!(
        "INSERT INTO cards (",
        card_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING"
    ))
    .bind(&record.public_token)
    .bind(&record.organisation_id)
    .bind(&record.client_id)
    .bind(&record.details)
    .bind(&record.pan_sealed)
    .bind(&record.cvv_sealed)
    .bind(&record.pin_sealed)
    .bind(&record.status_code)
    .bind(&record.status_updated)
    .bind(i64::from(record.cvv_blocked))
    .bind(record.created_at)
    .bind(record.updated_at)
    .bind(record.version)
    .bind(&record.idempotency_id)
}

fn bulk_job(row: &AnyRow) -> Result<BulkJobRecord, sqlx::Error> {
    Ok(BulkJobRecord {
        id: row.try_get("id")?,
        organisation_id: row.try_get("organisation_id")?,
        client_id: row.try_get("client_id")?,
        request: row.try_get("request")?,
        quantity: row.try_get("quantity")?,
        status: row.try_get("status")?,
        public_tokens: row.try_get("public_tokens")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        idempotency_id: row.try_get("idempotency_id")?,
    })
}

impl Database {
    /// [`CardsStore::post_with`] itself, while [`Database::writing_cards`] watches it.
    async fn post_now(
        &self,
        postings: &[Posting],
        authorisation: Option<&AuthorisationChange>,
        announce: Option<Announce<'_>>,
    ) -> Result<Posted, StoreError> {
        let mut transaction = self.counted().begin().await?;
        match authorisation {
            Some(AuthorisationChange::Insert(record)) => {
                sqlx::query(
                    "INSERT INTO card_authorisations (id, public_token, organisation_id, amount_minor, currency, \
                     merchant, state, response_code, auth_code, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&record.id)
                .bind(&record.public_token)
                .bind(&record.organisation_id)
                .bind(record.amount_minor)
                .bind(&record.currency)
                .bind(&record.merchant)
                .bind(&record.state)
                .bind(&record.response_code)
                .bind(&record.auth_code)
                .bind(record.created_at)
                .bind(record.updated_at)
                .execute(&mut *transaction)
                .await?;
            }
            Some(AuthorisationChange::Transition { id, from, to, now }) => {
                let changed = sqlx::query(
                    "UPDATE card_authorisations SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4",
                )
                .bind(to)
                .bind(*now)
                .bind(id)
                .bind(from)
                .execute(&mut *transaction)
                .await?
                .rows_affected();
                if changed != 1 {
                    transaction.rollback().await?;
                    return Ok(Posted::Refused(postings.len()));
                }
            }
            None => {}
        }
        // Cards are changed in one order (by public token) whatever the act's order, so two
        // transfers in opposite directions cannot deadlock on PostgreSQL's row locks.
        let mut order: Vec<usize> = (0..postings.len()).collect();
        order.sort_by(|a, b| {
            let token = |index: &usize| postings.get(*index).map(|p| p.line.public_token.as_str());
            token(a).cmp(&token(b))
        });
        let mut lines: Vec<Option<TransactionLine>> = vec![None; postings.len()];
        for index in order {
            let Some(posting) = postings.get(index) else {
                continue;
            };
            // A posting without a floor or a ceiling gets one no balance reaches.
            let query = sqlx::query(
                "UPDATE cards SET balance_minor = balance_minor + $1, pending_minor = pending_minor + $2, \
                 ledger_line = ledger_line + 1 WHERE public_token = $3 AND status_code = $4 \
                 AND balance_minor + $1 + pending_minor + $2 >= $5 AND balance_minor + $1 <= $6 \
                 AND ($7 < 0 OR version = $7) \
                 RETURNING balance_minor, pending_minor, ledger_line",
            )
            .bind(posting.balance_delta)
            .bind(posting.pending_delta)
            .bind(&posting.line.public_token)
            .bind(&posting.expected_status)
            .bind(posting.available_floor.unwrap_or(NO_FLOOR))
            .bind(posting.balance_ceiling.unwrap_or(NO_CEILING))
            .bind(posting.expected_version.unwrap_or(-1));
            let Some(row) = query.fetch_optional(&mut *transaction).await? else {
                transaction.rollback().await?;
                return Ok(Posted::Refused(index));
            };
            let balance: i64 = row.try_get(0)?;
            let pending: i64 = row.try_get(1)?;
            let mut line = posting.line.clone();
            line.line = row.try_get(2)?;
            line.actual_balance = balance;
            line.available_balance = balance + pending;
            sqlx::query(concat!(
                "INSERT INTO card_transactions (",
                line_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
            ))
            .bind(&line.id)
            .bind(&line.public_token)
            .bind(&line.organisation_id)
            .bind(line.line)
            .bind(&line.type_code)
            .bind(&line.status_code)
            .bind(&line.transaction_type)
            .bind(line.amount_minor)
            .bind(&line.currency)
            .bind(line.actual_balance)
            .bind(line.available_balance)
            .bind(&line.description)
            .bind(&line.note)
            .bind(&line.link)
            .bind(&line.processing_code)
            .bind(&line.request_id)
            .bind(line.leg)
            .bind(line.created_at)
            .execute(&mut *transaction)
            .await?;
            if let Some(slot) = lines.get_mut(index) {
                *slot = Some(line);
            }
        }
        let lines: Vec<TransactionLine> = lines.into_iter().flatten().collect();
        if let Some(announce) = announce {
            for draft in announce(&lines) {
                insert_notification(&mut transaction, &draft).await?;
            }
        }
        transaction.commit().await?;
        Ok(Posted::Done(lines))
    }
}

#[async_trait]
impl CardsStore for Database {
    // A new card changes no remembered one (a remembered card exists, and its token is unique),
    // so inserts leave the card memory alone; so does `record_bulk_card`.
    async fn insert_card(&self, record: &CardRecord) -> Result<bool, StoreError> {
        let result = insert_card(record).execute(self.counted()).await?;
        Ok(result.rows_affected() == 1)
    }

    async fn card(&self, public_token: &str) -> Result<Option<CardRecord>, StoreError> {
        let ticket = match self
            .card_memory
            .as_ref()
            .map(|memory| memory.lookup(public_token))
        {
            Some(Lookup::Known(card)) => return Ok(Some(card)),
            Some(Lookup::Unknown(ticket)) => Some(ticket),
            None => None,
        };
        let row = sqlx::query(concat!(
            "SELECT ",
            card_columns!(),
            ", balance_minor, pending_minor FROM cards WHERE public_token = $1"
        ))
        .bind(public_token)
        .fetch_optional(self.counted())
        .await?;
        let found = row.as_ref().map(card).transpose()?;
        if let (Some(memory), Some(ticket), Some(found)) = (&self.card_memory, ticket, &found) {
            memory.remember(ticket, found);
        }
        Ok(found)
    }

    // The announcing write with nothing to announce: in a transaction, so that SQLite's write
    // lock is held from the statement to its end (what the card memory's fence relies on).
    async fn update_card(&self, record: &CardRecord) -> Result<bool, StoreError> {
        self.update_card_announcing(record, &[]).await
    }

    async fn post_with(
        &self,
        postings: &[Posting],
        authorisation: Option<&AuthorisationChange>,
        announce: Option<Announce<'_>>,
    ) -> Result<Posted, StoreError> {
        let touched: Vec<&str> = postings
            .iter()
            .map(|posting| posting.line.public_token.as_str())
            .collect();
        self.writing_cards(
            Touched::Cards(&touched),
            self.post_now(postings, authorisation, announce),
        )
        .await
    }

    async fn update_card_announcing(
        &self,
        record: &CardRecord,
        notifications: &[NotificationDraft],
    ) -> Result<bool, StoreError> {
        let touched = [record.public_token.as_str()];
        self.writing_cards(Touched::Cards(&touched), async {
            let mut transaction = self.counted().begin().await?;
            let result = update_card(record).execute(&mut *transaction).await?;
            if result.rows_affected() != 1 {
                transaction.rollback().await?;
                return Ok(false);
            }
            for draft in notifications {
                insert_notification(&mut transaction, draft).await?;
            }
            transaction.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn due_notifications(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            notification_columns!(),
            " FROM webhook_notifications n WHERE n.status = 'Pending' AND n.next_attempt_at <= $1 \
             AND n.lease_until < $1 AND NOT EXISTS (SELECT 1 FROM webhook_notifications e \
             WHERE e.public_token = n.public_token AND e.sequence < n.sequence AND e.status = 'Pending') \
             ORDER BY n.created_at, n.sequence LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(self.counted())
        .await?;
        Ok(rows.iter().map(notification).collect::<Result<_, _>>()?)
    }

    async fn lease_notification(
        &self,
        id: &str,
        lease: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE webhook_notifications SET lease = $1, lease_until = $2 \
             WHERE id = $3 AND status = 'Pending' AND lease_until < $4",
        )
        .bind(lease)
        .bind(until)
        .bind(id)
        .bind(now)
        .execute(self.counted())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn notification_attempted(
        &self,
        id: &str,
        lease: &str,
        now: i64,
        outcome: Result<(), (String, i64, bool)>,
    ) -> Result<bool, StoreError> {
        let result = match outcome {
            Ok(()) => {
                sqlx::query(
                    "UPDATE webhook_notifications SET status = 'Delivered', attempts = attempts + 1, \
                     delivered_at = $1, first_attempt_at = COALESCE(first_attempt_at, $1), \
                     last_error = NULL, lease = NULL, lease_until = 0 WHERE id = $2 AND lease = $3",
                )
                .bind(now)
                .bind(id)
                .bind(lease)
                .execute(self.counted())
                .await?
            }
            Err((error, next_attempt_at, give_up)) => {
                sqlx::query(
                    "UPDATE webhook_notifications SET status = $1, attempts = attempts + 1, \
                     last_error = $2, next_attempt_at = $3, first_attempt_at = COALESCE(first_attempt_at, $4), \
                     lease = NULL, lease_until = 0 WHERE id = $5 AND lease = $6",
                )
                .bind(if give_up { "Failed" } else { "Pending" })
                .bind(error)
                .bind(next_attempt_at)
                .bind(now)
                .bind(id)
                .bind(lease)
                .execute(self.counted())
                .await?
            }
        };
        Ok(result.rows_affected() == 1)
    }

    async fn undelivered_notifications(
        &self,
        organisation_id: &str,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            notification_columns!(),
            " FROM webhook_notifications WHERE organisation_id = $1 AND status <> 'Delivered' \
             ORDER BY created_at, public_token, sequence"
        ))
        .bind(organisation_id)
        .fetch_all(self.counted())
        .await?;
        Ok(rows.iter().map(notification).collect::<Result<_, _>>()?)
    }

    async fn resend_notifications(
        &self,
        organisation_id: &str,
        ids: &[String],
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut transaction = self.counted().begin().await?;
        let mut found = 0;
        for id in ids {
            found += sqlx::query(
                "UPDATE webhook_notifications SET status = 'Pending', next_attempt_at = $1, \
                 first_attempt_at = NULL WHERE id = $2 AND organisation_id = $3",
            )
            .bind(now)
            .bind(id)
            .bind(organisation_id)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        }
        transaction.commit().await?;
        Ok(found)
    }

    async fn authorisation(&self, id: &str) -> Result<Option<AuthorisationRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, public_token, organisation_id, amount_minor, currency, merchant, state, response_code, \
             auth_code, created_at, updated_at FROM card_authorisations WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.counted())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AuthorisationRecord {
            id: row.try_get("id")?,
            public_token: row.try_get("public_token")?,
            organisation_id: row.try_get("organisation_id")?,
            amount_minor: row.try_get("amount_minor")?,
            currency: row.try_get("currency")?,
            merchant: row.try_get("merchant")?,
            state: row.try_get("state")?,
            response_code: row.try_get("response_code")?,
            auth_code: row.try_get("auth_code")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        }))
    }

    async fn transaction_lines(
        &self,
        public_token: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<TransactionLine>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            line_columns!(),
            " FROM card_transactions WHERE public_token = $1 AND created_at >= $2 AND created_at <= $3 ORDER BY line"
        ))
        .bind(public_token)
        .bind(from)
        .bind(to)
        .fetch_all(self.counted())
        .await?;
        Ok(rows
            .iter()
            .map(transaction_line)
            .collect::<Result<_, _>>()?)
    }

    async fn transaction_lines_of_request(
        &self,
        request_id: &str,
    ) -> Result<Vec<TransactionLine>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            line_columns!(),
            " FROM card_transactions WHERE request_id = $1 ORDER BY leg"
        ))
        .bind(request_id)
        .fetch_all(self.counted())
        .await?;
        Ok(rows
            .iter()
            .map(transaction_line)
            .collect::<Result<_, _>>()?)
    }

    async fn idempotency(
        &self,
        id: &str,
        newer_than: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(newer_than)
            .execute(self.counted())
            .await?;
        let row = sqlx::query(
            "SELECT id, endpoint, request_hash, status, response, created_at FROM idempotency_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.counted())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(IdempotencyRecord {
            id: row.try_get("id")?,
            endpoint: row.try_get("endpoint")?,
            request_hash: row.try_get("request_hash")?,
            status: row.try_get("status")?,
            response: row.try_get("response")?,
            created_at: row.try_get("created_at")?,
        }))
    }

    async fn insert_idempotency(&self, record: &IdempotencyRecord) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO idempotency_keys (id, endpoint, request_hash, status, response, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&record.id)
        .bind(&record.endpoint)
        .bind(&record.request_hash)
        .bind(record.status)
        .bind(&record.response)
        .bind(record.created_at)
        .execute(self.counted())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn complete_idempotency(
        &self,
        id: &str,
        status: i64,
        response: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $1, response = $2 WHERE id = $3 AND status = 0",
        )
        .bind(status)
        .bind(response)
        .bind(id)
        .execute(self.counted())
        .await?;
        Ok(())
    }

    async fn release_idempotency(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM idempotency_keys WHERE id = $1 AND status = 0")
            .bind(id)
            .execute(self.counted())
            .await?;
        Ok(())
    }

    async fn take_over_idempotency(
        &self,
        id: &str,
        stale_before: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE idempotency_keys SET created_at = $1 \
             WHERE id = $2 AND status = 0 AND created_at < $3",
        )
        .bind(now)
        .bind(id)
        .bind(stale_before)
        .execute(self.counted())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn insert_bulk_job(&self, record: &BulkJobRecord) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO bulk_jobs (",
            bulk_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING"
        ))
        .bind(&record.id)
        .bind(&record.organisation_id)
        .bind(&record.client_id)
        .bind(&record.request)
        .bind(record.quantity)
        .bind(&record.status)
        .bind(&record.public_tokens)
        .bind(record.created_at)
        .bind(record.updated_at)
        .bind(&record.idempotency_id)
        .execute(self.counted())
        .await?;
        Ok(())
    }

    async fn card_by_idempotency(&self, id: &str) -> Result<Option<CardRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            card_columns!(),
            ", balance_minor, pending_minor FROM cards WHERE idempotency_id = $1"
        ))
        .bind(id)
        .fetch_optional(self.counted())
        .await?;
        Ok(row.as_ref().map(card).transpose()?)
    }

    async fn bulk_job_by_idempotency(&self, id: &str) -> Result<Option<BulkJobRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            bulk_columns!(),
            " FROM bulk_jobs WHERE idempotency_id = $1"
        ))
        .bind(id)
        .fetch_optional(self.counted())
        .await?;
        Ok(row.as_ref().map(bulk_job).transpose()?)
    }

    async fn bulk_job(&self, id: &str) -> Result<Option<BulkJobRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            bulk_columns!(),
            " FROM bulk_jobs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.counted())
        .await?;
        Ok(row.as_ref().map(bulk_job).transpose()?)
    }

    async fn unfinished_bulk_jobs(&self) -> Result<Vec<BulkJobRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            bulk_columns!(),
            " FROM bulk_jobs WHERE status IN ('Pending', 'Processing') ORDER BY created_at, id"
        ))
        .fetch_all(self.counted())
        .await?;
        Ok(rows.iter().map(bulk_job).collect::<Result<_, _>>()?)
    }

    async fn claim_bulk_job(
        &self,
        id: &str,
        lease: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE bulk_jobs SET status = 'Processing', lease = $1, updated_at = $2 WHERE id = $3 \
             AND (status = 'Pending' OR (status = 'Processing' AND updated_at < $4))",
        )
        .bind(lease)
        .bind(now)
        .bind(id)
        .bind(stale_before)
        .execute(self.counted())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn update_bulk_job(
        &self,
        id: &str,
        lease: &str,
        status: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE bulk_jobs SET status = $1, updated_at = $2 WHERE id = $3 AND lease = $4",
        )
        .bind(status)
        .bind(now)
        .bind(id)
        .bind(lease)
        .execute(self.counted())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn record_bulk_card(
        &self,
        id: &str,
        lease: &str,
        card: &CardRecord,
        public_tokens: &str,
        now: i64,
    ) -> Result<BulkCard, StoreError> {
        let mut transaction = self.counted().begin().await?;
        let listed = sqlx::query(
            "UPDATE bulk_jobs SET public_tokens = $1, updated_at = $2 \
             WHERE id = $3 AND lease = $4 AND status = 'Processing'",
        )
        .bind(public_tokens)
        .bind(now)
        .bind(id)
        .bind(lease)
        .execute(&mut *transaction)
        .await?;
        if listed.rows_affected() != 1 {
            transaction.rollback().await?;
            return Ok(BulkCard::Fenced);
        }
        let inserted = insert_card(card).execute(&mut *transaction).await?;
        if inserted.rows_affected() != 1 {
            transaction.rollback().await?;
            return Ok(BulkCard::TokenTaken);
        }
        transaction.commit().await?;
        Ok(BulkCard::Recorded)
    }
}

#[async_trait]
impl RateLimitStore for Database {
    async fn add_hits(
        &self,
        counts: &[(String, i64, i64)],
        now: i64,
    ) -> Result<Vec<i64>, StoreError> {
        self.prune(now).await?;
        let mut transaction = self.counted().begin().await?;
        let mut totals = Vec::with_capacity(counts.len());
        for (key, window_start, count) in counts {
            let total: i64 = sqlx::query_scalar(
                "INSERT INTO rate_limits (key, window_start, count) VALUES ($1, $2, $3) \
                 ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limits.count + excluded.count \
                 RETURNING count",
            )
            .bind(key)
            .bind(window_start)
            .bind(count)
            .fetch_one(&mut *transaction)
            .await?;
            totals.push(total);
        }
        transaction.commit().await?;
        Ok(totals)
    }
}

#[async_trait]
impl TokenStandingStore for Database {
    async fn trust_version(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT version FROM trust_changes WHERE id = 1")
                .fetch_one(self.counted())
                .await?,
        )
    }

    fn local_changes(&self) -> u64 {
        self.local_changes.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn token_standing(
        &self,
        token: &TokenReference<'_>,
    ) -> Result<TokenStanding, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM certificates WHERE thumbprint = $3 AND revoked_at IS NOT NULL) AS certificate_revoked, \
             (SELECT COUNT(*) FROM revoked_tokens WHERE jti = $1) AS token_revoked, \
             (SELECT COUNT(*) FROM oauth_clients WHERE client_id = $2 AND registration_id = $4) AS client_exists",
        )
        .bind(token.jti)
        .bind(token.client_id)
        .bind(token.thumbprint)
        .bind(token.registration_id)
        .fetch_one(self.counted())
        .await?;
        Ok(TokenStanding {
            certificate_revoked: row.try_get::<i64, _>("certificate_revoked")? > 0,
            token_revoked: row.try_get::<i64, _>("token_revoked")? > 0,
            client_exists: row.try_get::<i64, _>("client_exists")? > 0,
        })
    }
}

#[async_trait]
impl ReplayStore for Database {
    async fn use_once(&self, id: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        self.prune(now).await?;
        // Not `counted`: the commits take no connection from the pool but their first.
        self.used_jti
            .use_once(&self.pool, id, expires_at, now)
            .await
    }
}

#[async_trait]
impl KeyMaterialStore for Database {
    async fn key_material(&self, name: &str) -> Result<Option<KeyMaterialRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT name, sealed, certificate_pem, created_at FROM key_material WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(self.counted())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(KeyMaterialRecord {
            name: row.try_get("name")?,
            sealed: row.try_get("sealed")?,
            certificate_pem: row.try_get("certificate_pem")?,
            created_at: row.try_get("created_at")?,
        }))
    }

    async fn insert_key_material(&self, record: &KeyMaterialRecord) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO key_material (name, sealed, certificate_pem, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&record.name)
        .bind(&record.sealed)
        .bind(&record.certificate_pem)
        .bind(record.created_at)
        .execute(self.counted())
        .await?;
        Ok(result.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The database URL of the run: PostgreSQL when `CERTBOUND_TEST_DATABASE_URL` names one,
    /// else a fresh SQLite file.
    async fn database() -> (Database, Option<tempfile::TempDir>) {
        match std::env::var("CERTBOUND_TEST_DATABASE_URL") {
            Ok(url) if url.starts_with("postgres") => {
                (Database::connect(&url).await.unwrap(), None)
            }
            _ => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                (Database::connect(&url).await.unwrap(), Some(dir))
            }
        }
    }

    #[tokio::test]
    async fn jti_is_usable_once() {
        let (database, _dir) = database().await;
        let id = format!("client|{}", crate::clock::now_nanos_for_tests());
        assert!(database.use_once(&id, 2_000_000_000, 1_000).await.unwrap());
        assert!(!database.use_once(&id, 2_000_000_000, 1_000).await.unwrap());
    }

    /// A query that finds every connection taken and the pool at its maximum is counted as a
    /// wait (for `certbound_database_pool_waits_total`); one that finds an idle connection is not.
    #[tokio::test]
    async fn a_query_that_waits_for_a_connection_is_counted() {
        let (database, _dir) = database().await;
        database.bulk_jobs_by_status().await.unwrap();
        assert_eq!(database.pool_waits(), 0);
        let max = database.pool().options().get_max_connections();
        let mut held = Vec::new();
        for _ in 0..max {
            held.push(database.pool().acquire().await.unwrap());
        }
        let waiting = {
            let database = database.clone();
            tokio::spawn(async move { database.bulk_jobs_by_status().await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "it found a connection");
        drop(held);
        waiting.await.unwrap().unwrap();
        assert_eq!(database.pool_waits(), 1);
    }

    /// Group commit: 64 concurrent uses of 16 ids (4 copies each, half through a second store on
    /// the same database, as another instance) make exactly 16 first uses, one per id, and every
    /// answer is durable: a store connected afterwards finds each id used.
    #[tokio::test]
    async fn concurrent_uses_are_committed_together_and_each_id_is_first_once() {
        let (database, dir) = database().await;
        let url = match &dir {
            Some(dir) => format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display()),
            None => std::env::var("CERTBOUND_TEST_DATABASE_URL").unwrap(),
        };
        let other = Database::connect(&url).await.unwrap();
        let unique = crate::clock::now_nanos_for_tests();
        let ids: Vec<String> = (0..16).map(|n| format!("group|{unique}|{n}")).collect();
        let mut uses = tokio::task::JoinSet::new();
        for copy in 0..4 {
            for id in &ids {
                let store = if copy % 2 == 0 {
                    database.clone()
                } else {
                    other.clone()
                };
                let id = id.clone();
                uses.spawn(async move {
                    let first = store.use_once(&id, 2_000_000_000, 1_000).await.unwrap();
                    (id, first)
                });
            }
        }
        let mut firsts = std::collections::HashMap::new();
        while let Some(answer) = uses.join_next().await {
            let (id, first) = answer.unwrap();
            *firsts.entry(id).or_insert(0) += usize::from(first);
        }
        assert_eq!(firsts.len(), 16);
        assert!(firsts.values().all(|count| *count == 1), "{firsts:?}");
        let later = Database::connect(&url).await.unwrap();
        for id in &ids {
            assert!(!later.use_once(id, 2_000_000_000, 1_000).await.unwrap());
        }
    }

    /// The change feed (PostgreSQL): a change at one instance moves the other's count of known
    /// changes without its reading the trust counter. (That an instance skips its own
    /// notifications is not asserted: other tests share the database and notify too.)
    #[tokio::test]
    async fn another_instances_change_arrives_by_notification() {
        let Ok(url) = std::env::var("CERTBOUND_TEST_DATABASE_URL") else {
            return;
        };
        if !url.starts_with("postgres") {
            return;
        }
        let here = Database::connect(&url).await.unwrap();
        let there = Database::connect(&url).await.unwrap();
        assert_eq!(there.local_changes(), 0);
        let unique = crate::clock::now_nanos_for_tests();
        let mut made = 0;
        // The other's listener connects in the background: change until it hears one.
        while there.local_changes() == 0 {
            assert!(
                made < 100,
                "no notification reached the other instance in 10 s"
            );
            here.revoke_token(
                &format!("feed-{unique}-{made}"),
                "client",
                2_000_000_000,
                1_000,
            )
            .await
            .unwrap();
            made += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(here.local_changes() >= made);
    }

    /// One script against the SQL store and the in-memory one: every answer the trust
    /// decisions ask for is the same, so their unit tests over memory speak for the database.
    #[tokio::test]
    async fn sql_and_memory_agree() {
        let (database, _dir) = database().await;
        let memory = crate::MemoryStore::new();
        let unique = crate::clock::now_nanos_for_tests();
        let client_id = format!("https://directory/openid_relying_party/{unique}");
        let organisation_id = format!("org-{unique}");
        let thumbprint = format!("thumb-{unique}");
        let jti = format!("jti-{unique}");
        let reference = |registration_id: &'static str| TokenReference {
            jti: &jti,
            client_id: &client_id,
            registration_id,
            thumbprint: &thumbprint,
        };
        async fn both(
            database: &Database,
            memory: &crate::MemoryStore,
            token: &TokenReference<'_>,
        ) -> TokenStanding {
            let sql = database.token_standing(token).await.unwrap();
            assert_eq!(sql, memory.token_standing(token).await.unwrap());
            sql
        }
        let standing = both(&database, &memory, &reference("first")).await;
        assert!(!standing.client_exists);

        let client = |registration_id: &str| ClientRecord {
            client_id: client_id.clone(),
            software_id: format!("software-{unique}"),
            organisation_id: organisation_id.clone(),
            metadata: "{}".into(),
            registration_token_hash: format!("hash-{unique}-{registration_id}"),
            registration_id: registration_id.into(),
            created_at: 1_000,
            updated_at: 1_000,
        };
        assert!(database.insert_client(&client("first")).await.unwrap());
        memory.register(&client_id, "first");
        assert!(
            both(&database, &memory, &reference("first"))
                .await
                .client_exists
        );

        database.delete_client(&client_id).await.unwrap();
        memory.delete_client(&client_id);
        assert!(database.insert_client(&client("second")).await.unwrap());
        memory.register(&client_id, "second");
        assert!(
            !both(&database, &memory, &reference("first"))
                .await
                .client_exists
        );
        assert!(
            both(&database, &memory, &reference("second"))
                .await
                .client_exists
        );

        database
            .revoke_token(&jti, &client_id, 2_000, 1_000)
            .await
            .unwrap();
        memory.revoke_token(&jti);
        assert!(
            both(&database, &memory, &reference("second"))
                .await
                .token_revoked
        );

        database
            .insert_organisation(&OrganisationRecord {
                id: organisation_id.clone(),
                body: "{}".into(),
                created_at: 1_000,
            })
            .await
            .unwrap();
        let certificate = CertificateRecord {
            id: format!("certificate-{unique}"),
            organisation_id: organisation_id.clone(),
            software_statement_id: None,
            certificate_type: "transport".into(),
            key_id: format!("kid-{unique}"),
            thumbprint: thumbprint.clone(),
            serial_hex: format!("{unique:x}"),
            chain_pem: String::new(),
            not_before: 0,
            not_after: 2_000,
            created_at: 1_000,
            revoked_at: None,
        };
        database.insert_certificate(&certificate).await.unwrap();
        assert!(
            !both(&database, &memory, &reference("second"))
                .await
                .certificate_revoked
        );
        assert!(
            database
                .revoke_certificate(&certificate.id, 1_500)
                .await
                .unwrap()
        );
        memory.revoke_certificate(&thumbprint);
        assert!(
            both(&database, &memory, &reference("second"))
                .await
                .certificate_revoked
        );

        for (now, expected) in [(1_000, true), (1_000, false), (1_999, false)] {
            assert_eq!(database.use_once(&jti, 2_000, now).await.unwrap(), expected);
            assert_eq!(memory.use_once(&jti, 2_000, now).await.unwrap(), expected);
        }
    }

    /// A bulk job's cards are inserted and listed together, only under the job's current lease:
    /// a worker whose job was taken over (it stalled) adds nothing, so the job ends with exactly
    /// the cards its list names.
    #[tokio::test]
    async fn a_stalled_bulk_worker_is_fenced_off() {
        let (database, _dir) = database().await;
        let unique = crate::clock::now_nanos_for_tests();
        let id = format!("job-{unique}");
        let now = 1_000;
        database
            .insert_bulk_job(&BulkJobRecord {
                id: id.clone(),
                organisation_id: format!("org-{unique}"),
                client_id: "client".into(),
                request: "{}".into(),
                quantity: 3,
                status: "Pending".into(),
                public_tokens: "[]".into(),
                created_at: now,
                updated_at: now,
                idempotency_id: None,
            })
            .await
            .unwrap();
        let card = |n: u64| CardRecord {
            public_token: format!("{:09}", (unique + u128::from(n)) % 1_000_000_000),
            organisation_id: format!("org-{unique}"),
            client_id: "client".into(),
            details: "{}".into(),
            pan_sealed: "v1.x".into(),
            cvv_sealed: "v1.x".into(),
            pin_sealed: None,
            status_code: "00".into(),
            status_updated: "{}".into(),
            cvv_blocked: false,
            created_at: now,
            updated_at: now,
            version: 0,
            idempotency_id: None,
            balance_minor: 0,
            pending_minor: 0,
        };
        let list = |cards: &[u64]| {
            let tokens: Vec<String> = cards.iter().map(|n| card(*n).public_token).collect();
            format!("{tokens:?}")
        };
        assert!(
            database
                .claim_bulk_job(&id, "stalled", now, now - 30)
                .await
                .unwrap()
        );
        assert!(
            !database
                .claim_bulk_job(&id, "other", now, now - 30)
                .await
                .unwrap(),
            "held"
        );
        let recorded = database
            .record_bulk_card(&id, "stalled", &card(1), &list(&[1]), now)
            .await;
        assert_eq!(recorded.unwrap(), BulkCard::Recorded);
        // The worker stalls; 30 s without progress later another takes the job over.
        assert!(
            database
                .claim_bulk_job(&id, "taker", now + 31, now + 1)
                .await
                .unwrap()
        );
        let late = database
            .record_bulk_card(&id, "stalled", &card(2), &list(&[1, 2]), now + 40)
            .await;
        assert_eq!(late.unwrap(), BulkCard::Fenced);
        assert!(
            database
                .card(&card(2).public_token)
                .await
                .unwrap()
                .is_none(),
            "no orphan card"
        );
        assert!(
            !database
                .update_bulk_job(&id, "stalled", "Complete", now + 40)
                .await
                .unwrap()
        );
        // A public token already taken writes nothing either.
        let taken = database
            .record_bulk_card(&id, "taker", &card(1), &list(&[1, 1]), now + 41)
            .await;
        assert_eq!(taken.unwrap(), BulkCard::TokenTaken);
        for (n, cards) in [(3, vec![1, 3]), (4, vec![1, 3, 4])] {
            let recorded = database
                .record_bulk_card(&id, "taker", &card(n), &list(&cards), now + 42)
                .await;
            assert_eq!(recorded.unwrap(), BulkCard::Recorded);
        }
        assert!(
            database
                .update_bulk_job(&id, "taker", "Complete", now + 43)
                .await
                .unwrap()
        );
        let job = database.bulk_job(&id).await.unwrap().unwrap();
        assert_eq!(job.status, "Complete");
        assert_eq!(job.public_tokens, list(&[1, 3, 4]));
        for n in [1, 3, 4] {
            assert!(
                database
                    .card(&card(n).public_token)
                    .await
                    .unwrap()
                    .is_some()
            );
        }
    }

    #[tokio::test]
    async fn sqlite_runs_wal_with_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
        let database = Database::connect(&url).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(database.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(database.pool())
            .await
            .unwrap();
        assert_eq!(sync, 2, "synchronous must be FULL");
        // Migrations are idempotent across restarts.
        drop(database);
        Database::connect(&url).await.unwrap();
    }

    #[tokio::test]
    async fn counters_increase() {
        let (database, _dir) = database().await;
        let name = format!("crl-{}", crate::clock::now_nanos_for_tests());
        assert_eq!(database.next_counter(&name).await.unwrap(), 1);
        assert_eq!(database.next_counter(&name).await.unwrap(), 2);
    }
}
