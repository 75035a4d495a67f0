//! `--seed-clients N --seed-cards M`: fills the server's database with registered clients (each
//! with its transport certificate) and cards before the measurement, so the bench can show
//! whether a request's cost grows with the data (issue 13's flat-cost figures).
//!
//! The rows are made by the database itself (one `INSERT ... SELECT` over a generated series per
//! chunk), shaped like real ones: a client's metadata and a card's details and sealed PAN/CVV are
//! the sizes certbound writes; ids and thumbprints are random; public tokens are distinct 9-digit
//! numbers spread over the whole range (`i * 37 mod 10^9`). None of them can authenticate: the
//! bench's own clients are onboarded as usual beside them.

use std::time::Instant;

use certbound_store::{Backend, Database};

/// Rows per statement: progress is printed after each.
const CHUNK: u64 = 200_000;

/// A registered client's metadata, about the size certbound stores.
const METADATA: &str = r#"{"client_id":"seed","token_endpoint_auth_method":"private_key_jwt","grant_types":["client_credentials"],"scope":"cards.read cards.write pin.read pin.write cvv.read cvv.write bulkcard.read bulkcard.write cards.encrypted","jwks_uri":"https://localhost:8441/keystore/seed/seed/application.jwks","redirect_uris":["https://example.com/callback"],"software_statement":"seed","token_endpoint_auth_signing_alg":"PS256","tls_client_certificate_bound_access_tokens":true,"client_name":"Seeded client","software_roles":["programme-manager"]}"#;

/// A card's details, about the size certbound stores.
const DETAILS: &str = r#"{"cardType":"Virtual","cardProduct":"10001","customerReference":"seed","cardHolder":{"title":"Mx","firstName":"Seed","lastName":"Card","dateOfBirth":"1990-01-01"},"address":{"addressLine1":"1 Seed Street","addressLine2":null,"city":"London","county":null,"postCode":"EC1A 1BB","country":"GBR"},"fulfilment":null,"designId":null,"embossName":"SEED CARD","maskedPan":"400000******0000","startDate":"2026-11-30","expiryDate":"2029-11-30","currencyCode":"GBP"}"#;

fn sqlite_series(from: u64, to: u64) -> String {
    format!("WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i < {to}) ")
}

/// Adds `clients` clients (with a transport certificate each) and `cards` cards.
pub(crate) async fn seed(database_url: &str, clients: u64, cards: u64) -> Result<(), String> {
    let database = Database::connect(database_url)
        .await
        .map_err(|error| error.to_string())?;
    let sqlite = database.backend() == Backend::Sqlite;
    let random = |bytes: u32| {
        if sqlite {
            format!("lower(hex(randomblob({bytes})))")
        } else {
            format!(
                "substr(md5(random()::text) || md5(random()::text), 1, {})",
                bytes * 2
            )
        }
    };
    let series = |from: u64, to: u64| {
        if sqlite {
            (sqlite_series(from, to), "n".to_owned())
        } else {
            (
                String::new(),
                format!("generate_series({from}::bigint, {to}::bigint) AS n(i)"),
            )
        }
    };
    let text = |value: &str| value.replace('\'', "''");
    let public_token = if sqlite {
        "substr('00000000' || ((i * 37) % 1000000000), -9, 9)"
    } else {
        "lpad(((i * 37) % 1000000000)::text, 9, '0')"
    };
    let started = Instant::now();
    // The organisations every seeded software statement, certificate, client and card is of.
    if clients > 0 || cards > 0 {
        let (with, from) = series(0, 9_999);
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "{with}INSERT INTO organisations (id, body, created_at) \
             SELECT 'seed-org-' || i, '{{\"OrganisationName\":\"Seeded\"}}', 0 FROM {from}"
        )))
        .execute(database.pool())
        .await
        .map_err(|error| format!("seeding organisations: {error}"))?;
    }
    for (what, total) in [("clients", clients), ("cards", cards)] {
        let mut done = 0;
        while done < total {
            let to = (done + CHUNK).min(total);
            let (with, from) = series(done + 1, to);
            let statements = match what {
                "clients" => vec![
                    format!(
                        "{with}INSERT INTO software_statements (id, organisation_id, body, created_at) \
                         SELECT 'seed-ss-' || i, 'seed-org-' || (i % 10000), '{{\"ClientName\":\"Seeded\"}}', 0 FROM {from}"
                    ),
                    format!(
                        "{with}INSERT INTO certificates (id, organisation_id, software_statement_id, certificate_type, \
                         key_id, thumbprint, serial_hex, chain_pem, not_before, not_after, created_at, revoked_at) \
                         SELECT 'seed-cert-' || i, 'seed-org-' || (i % 10000), 'seed-ss-' || i, 'transport', {kid}, {thumb}, \
                         'seed' || i, '{pem}', 0, 4102444800, 0, NULL FROM {from}",
                        kid = random(32),
                        thumb = random(32),
                        pem = "-".repeat(1800),
                    ),
                    format!(
                        "{with}INSERT INTO oauth_clients (client_id, software_id, organisation_id, metadata, \
                         registration_token_hash, created_at, updated_at, registration_id) \
                         SELECT 'https://localhost:8441/openid_relying_party/seed-' || i, 'seed-ss-' || i, \
                         'seed-org-' || (i % 10000), '{metadata}', {hash}, 0, 0, {rid} FROM {from}",
                        metadata = text(METADATA),
                        hash = random(32),
                        rid = random(16),
                    ),
                ],
                _ => vec![format!(
                    "{with}INSERT INTO cards (public_token, organisation_id, client_id, details, pan_sealed, cvv_sealed, \
                     pin_sealed, status_code, status_updated, cvv_blocked, created_at, updated_at, version, idempotency_id) \
                     SELECT {public_token}, 'seed-org-' || (i % 10000), \
                     'seed-client', '{details}', {pan}, {cvv}, NULL, '00', \
                     '{{\"updated\":\"2026-11-30T00:00:00Z\",\"updatedBy\":\"seed\",\"description\":\"Card issued\"}}', \
                     0, 0, 0, 0, NULL FROM {from}",
                    details = text(DETAILS),
                    pan = random(60),
                    cvv = random(44),
                )],
            };
            for statement in statements {
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(database.pool())
                    .await
                    .map_err(|error| format!("seeding {what}: {error}"))?;
            }
            done = to;
            println!(
                "  seeded {done} of {total} {what} ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    if sqlite {
        // Fold the write-ahead log into the database now, so the server under test does not
        // pay for copying gigabytes of seeded pages at its first write.
        sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(database.pool())
            .await
            .map_err(|error| format!("checkpointing the seeded database: {error}"))?;
    }
    database.pool().close().await;
    Ok(())
}
