//! First start and every later start: the master key, the database, and the stack's own keys.
//!
//! Every private key is generated here once, sealed under the master key and stored in the
//! database, so every instance sharing a PostgreSQL database (and the master key) uses the same
//! CA, signer and TLS identity. Creation is race-safe: a record is inserted only if absent and
//! re-read, so two instances starting together agree on one winner.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certbound_pki::{CertificateAuthority, PrivateKey, ServerIdentity, SigningKeyKind};
use certbound_store::{Database, KeyMaterialRecord, KeyMaterialStore, MasterKey};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

use crate::config::StackConfig;

/// Why the stack could not prepare its data.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// A file in the data dir could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The master key is malformed or does not open the stored keys.
    #[error(
        "master key: {0} (CERTBOUND_MASTER_KEY or DATA_DIR/master.key must be the key this database was created with)"
    )]
    MasterKey(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] certbound_store::StoreError),
    /// Key generation or certificate signing failed.
    #[error("{0}")]
    Crypto(String),
    /// An operation was asked for with values that would break the running stack.
    #[error("{0}")]
    Config(String),
}

/// The keys and certificates the running parts need.
#[derive(Debug)]
pub struct TrustMaterial {
    /// The CA hierarchy.
    pub ca: CertificateAuthority,
    /// The SSA signer (RSA 2048, PS256, kid `signer`) and its chain.
    pub ssa_signer: ServerIdentity,
    /// The TLS server identity for every listener.
    pub tls: ServerIdentity,
    /// The operator's admin token.
    pub admin_token: String,
    /// The Cards API's RSA-OAEP-256 encryption key and its chain.
    pub cards_encryption: ServerIdentity,
    /// The Cards API's PS256 signing key and its chain.
    pub cards_signing: ServerIdentity,
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> BootstrapError + '_ {
    move |source| BootstrapError::File {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a file readable by the owner only.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), BootstrapError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(file_error(path))?;
    file.write_all(contents).map_err(file_error(path))?;
    file.sync_all().map_err(file_error(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(file_error(path))
}

/// The master key: `CERTBOUND_MASTER_KEY`, else `DATA_DIR/master.key`, else a new one written there.
pub(crate) fn master_key(
    data_dir: &Path,
    from_env: Option<&str>,
) -> Result<MasterKey, BootstrapError> {
    if let Some(encoded) = from_env {
        return MasterKey::parse(encoded)
            .map_err(|error| BootstrapError::MasterKey(error.to_string()));
    }
    let path = data_dir.join("master.key");
    match std::fs::read_to_string(&path) {
        Ok(encoded) => {
            MasterKey::parse(&encoded).map_err(|error| BootstrapError::MasterKey(error.to_string()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let (key, encoded) = MasterKey::generate()
                .map_err(|error| BootstrapError::MasterKey(error.to_string()))?;
            write_private(&path, format!("{}\n", encoded.as_str()).as_bytes())?;
            tracing::info!(path = %path.display(), "created master key");
            Ok(key)
        }
        Err(source) => Err(BootstrapError::File {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Opens the data dir and database, creating what is missing.
pub(crate) async fn open(
    config: &StackConfig,
) -> Result<(Arc<Database>, Arc<MasterKey>, TrustMaterial), BootstrapError> {
    std::fs::create_dir_all(&config.data_dir).map_err(file_error(&config.data_dir))?;
    lock_down(&config.data_dir)?;
    if config.database_url.is_none() {
        // Made 0600 before SQLite opens it: its WAL and shared-memory files take its mode.
        let database = config.data_dir.join("certbound.db");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&database)
            .map_err(file_error(&database))?;
    }
    // The stack is the embedded database's only server (it remembers cards): a second `up` on
    // the same SQLite file is refused here, before anything is made or migrated; instances that
    // share a database use PostgreSQL.
    let database = Arc::new(Database::connect_serving(&config.database_url()).await?);
    let from_env = std::env::var("CERTBOUND_MASTER_KEY").ok();
    let master = master_key(&config.data_dir, from_env.as_deref())?;
    let material = match trust_material(&database, &master, &config.public_host).await {
        Err(BootstrapError::MasterKey(message))
            if config.data_dir.join("master.key.new").exists() =>
        {
            return Err(BootstrapError::MasterKey(format!(
                "{message}; {} exists: a master key rotation committed and stopped before it \
                 swapped the files: move master.key.new to master.key",
                config.data_dir.join("master.key.new").display()
            )));
        }
        other => other?,
    };

    let ca_path = config.data_dir.join("ca.pem");
    std::fs::write(&ca_path, material.ca.root_pem()).map_err(file_error(&ca_path))?;
    write_private(
        &config.data_dir.join("admin.token"),
        format!("{}\n", material.admin_token).as_bytes(),
    )?;
    lock_down(&config.data_dir)?;
    Ok((database, Arc::new(master), material))
}

/// The data dir 0700 and every file in it 0600, on every start: an installation made by an older
/// version (a 0755 dir, a 0644 database holding cardholder data) is closed up too.
pub(crate) fn lock_down(data_dir: &Path) -> Result<(), BootstrapError> {
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(file_error(data_dir))?;
    for entry in std::fs::read_dir(data_dir).map_err(file_error(data_dir))? {
        let path = entry.map_err(file_error(data_dir))?.path();
        let metadata = std::fs::symlink_metadata(&path).map_err(file_error(&path))?;
        if metadata.is_file() && metadata.permissions().mode() & 0o777 != 0o600 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(file_error(&path))?;
        }
    }
    Ok(())
}

fn crypto<E: std::fmt::Display>(error: E) -> BootstrapError {
    BootstrapError::Crypto(error.to_string())
}

fn pem_chain(chain: &[Vec<u8>]) -> String {
    chain
        .iter()
        .map(|der| certbound_pki::pem("CERTIFICATE", der))
        .collect()
}

fn der_chain(pem: &str) -> Result<Vec<Vec<u8>>, BootstrapError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|der| der.map(|der| der.as_ref().to_vec()))
        .collect::<Result<_, _>>()
        .map_err(crypto)
}

/// Inserts a record unless present, then returns the stored one (ours or the race winner's).
async fn ensure(
    database: &Database,
    name: &str,
    create: impl FnOnce() -> Result<KeyMaterialRecord, BootstrapError>,
) -> Result<KeyMaterialRecord, BootstrapError> {
    if let Some(record) = database.key_material(name).await? {
        return Ok(record);
    }
    let record = create()?;
    if database.insert_key_material(&record).await? {
        tracing::info!(name, "created key material");
    }
    database
        .key_material(name)
        .await?
        .ok_or_else(|| BootstrapError::Crypto(format!("key material {name} vanished")))
}

fn sealed_identity(
    master: &MasterKey,
    name: &str,
    key: &PrivateKey,
    chain: &[Vec<u8>],
    now: i64,
) -> Result<KeyMaterialRecord, BootstrapError> {
    Ok(KeyMaterialRecord {
        name: name.into(),
        sealed: master.seal(name, key.pkcs8_der()).map_err(crypto)?,
        certificate_pem: Some(pem_chain(chain)),
        created_at: now,
    })
}

fn open_key(
    master: &MasterKey,
    record: &KeyMaterialRecord,
) -> Result<zeroize::Zeroizing<Vec<u8>>, BootstrapError> {
    master
        .open(&record.name, &record.sealed)
        .map_err(|error| BootstrapError::MasterKey(error.to_string()))
}

async fn trust_material(
    database: &Database,
    master: &MasterKey,
    public_host: &str,
) -> Result<TrustMaterial, BootstrapError> {
    let now = certbound_store::clock::now();

    // The CA: root and issuing keys sealed together, so the pair is created atomically.
    let ca_record = ensure(database, "ca", || {
        let (ca, root_key) = CertificateAuthority::generate(now, "certbound").map_err(crypto)?;
        let keys = json!({
            "root": STANDARD.encode(root_key.pkcs8_der()),
            "issuing": STANDARD.encode(ca.issuing_key().pkcs8_der()),
        });
        let keys = zeroize::Zeroizing::new(keys.to_string());
        Ok(KeyMaterialRecord {
            name: "ca".into(),
            sealed: master.seal("ca", keys.as_bytes()).map_err(crypto)?,
            certificate_pem: Some(pem_chain(&[
                ca.root_der().to_vec(),
                ca.issuing_der().to_vec(),
            ])),
            created_at: now,
        })
    })
    .await?;
    let keys: serde_json::Value =
        serde_json::from_slice(&open_key(master, &ca_record)?).map_err(crypto)?;
    let issuing_key = keys
        .get("issuing")
        .and_then(|value| value.as_str())
        .and_then(|value| STANDARD.decode(value).ok())
        .ok_or_else(|| BootstrapError::Crypto("stored CA key is malformed".into()))?;
    let chain = der_chain(ca_record.certificate_pem.as_deref().unwrap_or_default())?;
    let [root_der, issuing_der] = <[Vec<u8>; 2]>::try_from(chain).map_err(|_| {
        BootstrapError::Crypto("stored CA chain must hold the root and the issuing CA".into())
    })?;
    let ca = CertificateAuthority::from_parts(
        root_der,
        issuing_der,
        PrivateKey::from_pkcs8(SigningKeyKind::EcdsaP256, issuing_key).map_err(crypto)?,
    )
    .map_err(crypto)?;

    let signer_record = ensure(database, "ssa.signer", || {
        let key = PrivateKey::generate(SigningKeyKind::Rsa2048).map_err(crypto)?;
        let chain = ca
            .issue_signer(&key, "certbound SSA signer", now)
            .map_err(crypto)?;
        sealed_identity(master, "ssa.signer", &key, &chain, now)
    })
    .await?;

    let mut names = vec!["localhost", "127.0.0.1", "::1"];
    if !names.contains(&public_host) {
        names.push(public_host);
    }
    let tls_name = format!("tls.server.{public_host}");
    let tls_record = ensure(database, &tls_name, || {
        let identity = ca.issue_server(&names, now).map_err(crypto)?;
        sealed_identity(master, &tls_name, &identity.key, &identity.chain_der, now)
    })
    .await?;

    let cards_encryption_record = ensure(database, "cards.encryption", || {
        let key = PrivateKey::generate(SigningKeyKind::Rsa2048).map_err(crypto)?;
        let chain = ca
            .issue_signer(&key, "certbound Cards API encryption", now)
            .map_err(crypto)?;
        sealed_identity(master, "cards.encryption", &key, &chain, now)
    })
    .await?;
    let cards_signing_record = ensure(database, "cards.signing", || {
        let key = PrivateKey::generate(SigningKeyKind::Rsa2048).map_err(crypto)?;
        let chain = ca
            .issue_signer(&key, "certbound Cards API signing", now)
            .map_err(crypto)?;
        sealed_identity(master, "cards.signing", &key, &chain, now)
    })
    .await?;

    let admin_record = ensure(database, "admin.token", || {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).map_err(crypto)?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        Ok(KeyMaterialRecord {
            name: "admin.token".into(),
            sealed: master
                .seal("admin.token", token.as_bytes())
                .map_err(crypto)?,
            certificate_pem: None,
            created_at: now,
        })
    })
    .await?;

    let load = |record: &KeyMaterialRecord,
                kind: SigningKeyKind|
     -> Result<ServerIdentity, BootstrapError> {
        let key =
            PrivateKey::from_pkcs8(kind, open_key(master, record)?.to_vec()).map_err(crypto)?;
        let chain_der = der_chain(record.certificate_pem.as_deref().unwrap_or_default())?;
        Ok(ServerIdentity { chain_der, key })
    };
    let admin_token =
        String::from_utf8(open_key(master, &admin_record)?.to_vec()).map_err(crypto)?;
    Ok(TrustMaterial {
        ssa_signer: load(&signer_record, SigningKeyKind::Rsa2048)?,
        tls: load(&tls_record, SigningKeyKind::EcdsaP256)?,
        cards_encryption: load(&cards_encryption_record, SigningKeyKind::Rsa2048)?,
        cards_signing: load(&cards_signing_record, SigningKeyKind::Rsa2048)?,
        ca,
        admin_token,
    })
}

/// Adds a token signing key to the authorization server's ring (`certbound keys rotate`): it
/// is published at once and signs `publish_delay` seconds later.
pub async fn rotate_token_signing_key(
    config: &StackConfig,
    publish_delay: i64,
) -> Result<String, BootstrapError> {
    if publish_delay < certbound_authz::keys::MIN_PUBLISH_DELAY {
        return Err(BootstrapError::Config(format!(
            "a publish delay of {publish_delay} s is shorter than every instance needs to see the new key \
             ({} s: key rings reload within {} s, resource servers refetch within {} s more); \
             tokens signed with it would be refused meanwhile: use --publish-delay {} or more",
            certbound_authz::keys::MIN_PUBLISH_DELAY,
            certbound_authz::keys::RELOAD_INTERVAL,
            certbound_trust::fetch::REFETCH_INTERVAL,
            certbound_authz::keys::MIN_PUBLISH_DELAY,
        )));
    }
    if !config.data_dir.exists() && config.database_url.is_none() {
        return Err(BootstrapError::File {
            path: config.data_dir.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no data dir here: run `certbound up` first or pass --data-dir",
            ),
        });
    }
    let from_env = std::env::var("CERTBOUND_MASTER_KEY").ok();
    let master = master_key(&config.data_dir, from_env.as_deref())?;
    let database = Database::connect(&config.database_url()).await?;
    let now = certbound_store::clock::now();
    certbound_authz::keys::rotate(
        &database,
        &master,
        now,
        now + publish_delay.max(0),
        config.token_lifetime_seconds,
    )
    .await
    .map_err(|error| BootstrapError::Crypto(error.to_string()))
}

/// What a master key rotation did.
#[derive(Debug)]
pub struct MasterKeyRotation {
    /// Sealed values opened under the old key and sealed under the new one.
    pub resealed: u64,
    /// Where the old key is kept.
    pub backup: std::path::PathBuf,
}

/// `certbound master-key rotate`: a new master key, every sealed value (key material, token
/// signing keys, cards' PAN, CVV and PIN) sealed anew under it in one transaction, the old key
/// kept as `master.key.<UTC time>` and the new one written to `master.key`. Run it with every
/// instance stopped: a running one still holds the old key.
///
/// If the process dies after the transaction, the new key is in `master.key.new`, and a start
/// says so. Idempotency records keep digests under the old key: a retry within the hour after
/// the rotation is answered as a different request.
pub async fn rotate_master_key(
    config: &StackConfig,
    now: i64,
) -> Result<MasterKeyRotation, BootstrapError> {
    if std::env::var_os("CERTBOUND_MASTER_KEY").is_some() {
        return Err(BootstrapError::Config(
            "the master key comes from CERTBOUND_MASTER_KEY: rotation writes DATA_DIR/master.key, \
             so put the current key there and unset the variable first (and after, set it to the new key)"
                .into(),
        ));
    }
    let path = config.data_dir.join("master.key");
    let encoded = std::fs::read_to_string(&path).map_err(|source| BootstrapError::File {
        path: path.display().to_string(),
        source,
    })?;
    let old =
        MasterKey::parse(&encoded).map_err(|error| BootstrapError::MasterKey(error.to_string()))?;
    let (new, new_encoded) =
        MasterKey::generate().map_err(|error| BootstrapError::MasterKey(error.to_string()))?;
    let pending = config.data_dir.join("master.key.new");
    // Every server of an embedded database must be stopped: one still running would write its
    // remembered, old-key card secrets back over the resealed ones.
    let database = Database::connect_serving(&config.database_url()).await?;
    write_private(&pending, format!("{}\n", new_encoded.as_str()).as_bytes())?;
    let reseal = |value: certbound_store::SealedValue<'_>, sealed: &str| {
        let name = match (value.table, value.column) {
            ("token_signing_keys", _) => certbound_authz::keys::sealed_name(value.id),
            ("cards", column) => {
                certbound_cards::sealed_name(value.id, column.trim_end_matches("_sealed"))
            }
            _ => value.id.to_owned(),
        };
        let plaintext = old
            .open(&name, sealed)
            .map_err(|_| "does not open under the current master key".to_owned())?;
        new.seal(&name, &plaintext)
            .map_err(|error| error.to_string())
    };
    let resealed = match database.reseal_all(&reseal).await {
        Ok(resealed) => resealed,
        Err(error) => {
            let _ = std::fs::remove_file(&pending);
            return Err(BootstrapError::MasterKey(format!(
                "rotation stopped, nothing changed: {error}"
            )));
        }
    };
    database.pool().close().await;
    let stamp = time::OffsetDateTime::from_unix_timestamp(now)
        .ok()
        .and_then(|at| {
            at.format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| now.to_string());
    let backup = config.data_dir.join(format!("master.key.{stamp}"));
    std::fs::rename(&path, &backup).map_err(file_error(&backup))?;
    std::fs::rename(&pending, &path).map_err(file_error(&path))?;
    lock_down(&config.data_dir)?;
    Ok(MasterKeyRotation { resealed, backup })
}

/// `certbound backup`: a consistent copy of the SQLite database while the stack serves
/// (`VACUUM INTO` reads one snapshot; writers go on), written to `out` created 0600 first (it
/// holds cardholder data, sealed, and the stack's sealed keys). The master key is not in it, on
/// purpose: keep it apart. PostgreSQL is backed up with `pg_dump`. The size written.
pub async fn backup(config: &StackConfig, out: &Path) -> Result<u64, BootstrapError> {
    if config.database_url.is_some() {
        return Err(BootstrapError::Config(
            "this stack uses PostgreSQL: back it up with pg_dump (README, Running it for real)"
                .into(),
        ));
    }
    let database_file = config.data_dir.join("certbound.db");
    if !database_file.exists() {
        return Err(BootstrapError::Config(format!(
            "no database at {}: pass the stack's --data-dir (or --config)",
            database_file.display()
        )));
    }
    // VACUUM INTO writes only into a file that does not exist or is empty: made here, 0600.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(file_error(out))?;
    let database = Database::connect(&config.database_url()).await?;
    let result = database.copy_into(out).await;
    database.pool().close().await;
    if let Err(error) = result {
        let _ = std::fs::remove_file(out);
        return Err(BootstrapError::Store(error));
    }
    Ok(std::fs::metadata(out).map_err(file_error(out))?.len())
}

/// `certbound restore`: a new data dir from a backup and the master key it was sealed under.
/// Refuses a data dir that holds anything, and a key that does not open the backup's keys.
pub async fn restore(
    from: &Path,
    data_dir: &Path,
    master_key_file: &Path,
) -> Result<(), BootstrapError> {
    if std::fs::read_dir(data_dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(BootstrapError::Config(format!(
            "{} is not empty: restore into a new data dir",
            data_dir.display()
        )));
    }
    let encoded = std::fs::read_to_string(master_key_file).map_err(file_error(master_key_file))?;
    let master =
        MasterKey::parse(&encoded).map_err(|error| BootstrapError::MasterKey(error.to_string()))?;
    std::fs::create_dir_all(data_dir).map_err(file_error(data_dir))?;
    lock_down(data_dir)?;
    let database_file = data_dir.join("certbound.db");
    let copied = (|| {
        let mut source = std::fs::File::open(from)?;
        let mut target = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&database_file)?;
        std::io::copy(&mut source, &mut target)?;
        target.sync_all()
    })();
    copied.map_err(file_error(from))?;
    let url = format!("sqlite://{}?mode=rw", database_file.display());
    let checked = async {
        let database = Database::connect(&url).await?;
        let records = database.sealed_key_material().await?;
        database.pool().close().await;
        if records.is_empty() {
            return Err(BootstrapError::Config(format!(
                "{} holds no certbound keys: is it a certbound backup?",
                from.display()
            )));
        }
        for (name, sealed) in records {
            master.open(&name, &sealed).map_err(|_| {
                BootstrapError::MasterKey(format!(
                    "{} does not open the backup's keys",
                    master_key_file.display()
                ))
            })?;
        }
        Ok(())
    }
    .await;
    if let Err(error) = checked {
        let _ = std::fs::remove_dir_all(data_dir);
        return Err(error);
    }
    write_private(&data_dir.join("master.key"), encoded.as_bytes())?;
    lock_down(data_dir)
}
