//! `certbound onboard`: every step of the seed in order, printed as the seed names them, saving
//! the profile after each so that a second run with the same directory reuses what exists
//! instead of registering twice.

// `serde_json::Value["key"]` answers `Null` for a missing key or a non-object; it never panics.
#![allow(clippy::indexing_slicing)]

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};

use crate::profile::{Profile, write_private};
use crate::{ClientError, KeyAndCsr, Session, new_key_and_csr};

/// Where and as whom to onboard.
#[derive(Debug, Clone)]
pub struct OnboardOptions {
    /// Directory public URL.
    pub directory: String,
    /// Authorization server URL (issuer).
    pub authz: String,
    /// Cards API base URL.
    pub cards: String,
    /// The directory's admin token.
    pub admin_token: String,
    /// The trust anchor (PEM), copied into the profile; system roots if `None`.
    pub ca_pem: Option<String>,
    /// Organisation name.
    pub organisation_name: String,
    /// ISO 3166 alpha-2 country of the organisation.
    pub country: String,
    /// Application (client) name.
    pub client_name: String,
    /// Software roles.
    pub roles: Vec<String>,
    /// The profile directory.
    pub out: PathBuf,
    /// Where the Cards API sends the software's events (`ApiWebhookUri`, https), if anywhere.
    pub webhook: Option<String>,
}

/// Where onboarding reports its progress.
pub trait Reporter {
    /// A step starts: `index` of `total`, named as in the seed.
    fn step(&self, index: usize, total: usize, name: &str);
    /// Something the step got (or found already done).
    fn detail(&self, key: &str, value: &str);
}

const TOTAL: usize = 9;

fn id_of(value: &Value, field: &str) -> Result<String, ClientError> {
    value[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Invalid(format!("the answer has no {field}")))
}

/// Runs the whole onboarding; returns the session over the finished profile.
///
/// A run that fails leaves no half-made profile behind: a directory this run created is removed
/// again while nothing exists on the server that it would be the only record of. Once the
/// organisation exists, the profile stays (the error says so) and the same command resumes.
pub async fn onboard(
    options: &OnboardOptions,
    report: &dyn Reporter,
) -> Result<Session, ClientError> {
    let out = &options.out;
    let created = !out.exists();
    let error = match run(options, report).await {
        Ok(session) => return Ok(session),
        Err(error) => error,
    };
    if Profile::load(out).is_ok_and(|profile| profile.org_id.is_some()) {
        return Err(ClientError::Resumable {
            error: Box::new(error),
            profile: out.clone(),
        });
    }
    if created {
        let _ = std::fs::remove_dir_all(out);
    }
    Err(error)
}

async fn run(options: &OnboardOptions, report: &dyn Reporter) -> Result<Session, ClientError> {
    let out = &options.out;
    std::fs::create_dir_all(out).map_err(ClientError::io(out))?;
    let mut profile = match Profile::load(out) {
        Ok(profile) if profile.directory == options.directory => profile,
        Ok(_) => {
            return Err(ClientError::Invalid(format!(
                "{} holds a profile for another directory: choose another --out",
                out.display()
            )));
        }
        Err(_) => Profile {
            directory: options.directory.clone(),
            authz: options.authz.clone(),
            cards: options.cards.clone(),
            ..Profile::default()
        },
    };
    profile.authz = options.authz.clone();
    profile.cards = options.cards.clone();
    if let Some(ca) = &options.ca_pem {
        std::fs::write(out.join("ca.pem"), ca).map_err(ClientError::io(out.join("ca.pem")))?;
        profile.ca = Some("ca.pem".into());
    }
    profile.save(out)?;
    let mut session = Session::new(out, profile)?;

    report.step(1, TOTAL, "Raidiam Connect Well-Known");
    let directory = session.directory_discovery().await?;
    report.detail("issuer", directory["issuer"].as_str().unwrap_or_default());
    report.detail(
        "mTLS token endpoint",
        directory["mtls_endpoint_aliases"]["token_endpoint"]
            .as_str()
            .unwrap_or_default(),
    );

    report.step(2, TOTAL, "Cloudentity Well-Known");
    let authz = session.authz_discovery().await?;
    report.detail("issuer", authz["issuer"].as_str().unwrap_or_default());
    report.detail(
        "scopes",
        &authz["scopes_supported"]
            .as_array()
            .map(|s| s.len())
            .unwrap_or(0)
            .to_string(),
    );

    report.step(3, TOTAL, "Create an Application");
    let plain = session.plain_client();
    let admin = |method: Method, path: &str| {
        plain
            .request(method, format!("{}{path}", options.directory))
            .bearer_auth(&options.admin_token)
    };
    if session.profile.org_id.is_none() {
        let body =
            json!({"OrganisationName": options.organisation_name, "Country": options.country});
        let organisation = session
            .expect(
                "Create an organisation",
                false,
                admin(Method::POST, "/organisations").json(&body),
            )
            .await?;
        session.profile.org_id = Some(id_of(&organisation.json, "OrganisationId")?);
        session.save()?;
    }
    let org = session.profile.org_id.clone().unwrap_or_default();
    if session.profile.ssa_id.is_none() {
        let mut body = json!({
            "ClientName": options.client_name, "Version": "1.0", "HomepageUri": "https://example.com",
            "LogoUri": "https://example.com/logo.png", "RedirectUri": ["https://example.com/callback"],
            "Roles": options.roles, "Description": format!("{} (certbound onboard)", options.client_name),
        });
        if let (Some(webhook), serde_json::Value::Object(map)) = (&options.webhook, &mut body) {
            map.insert(
                "ApiWebhookUri".into(),
                serde_json::Value::from(webhook.clone()),
            );
        }
        let path = format!("/organisations/{org}/softwarestatements");
        let statement = session
            .expect(
                "Create an Application",
                false,
                admin(Method::POST, &path).json(&body),
            )
            .await?;
        session.profile.ssa_id = Some(id_of(&statement.json, "SoftwareStatementId")?);
        session.profile.client_id = Some(id_of(&statement.json, "ClientId")?);
        session.save()?;
    }
    let ssa = session.profile.ssa_id.clone().unwrap_or_default();
    report.detail("org_id", &org);
    report.detail("ssa_id", &ssa);
    report.detail(
        "client_id",
        session.profile.client_id.as_deref().unwrap_or_default(),
    );

    for (index, kind) in [(4, "transport"), (5, "signing")] {
        report.step(
            index,
            TOTAL,
            &format!("Prepare the New Certificate ({kind})"),
        );
        let has = match kind {
            "transport" => session.profile.transport_certificate.is_some(),
            _ => session.profile.signing_certificate.is_some(),
        };
        if has {
            report.detail("reused", &format!("{kind}.pem"));
            continue;
        }
        let KeyAndCsr { key_pem, csr_pem } = new_key_and_csr(
            Some(&options.country),
            &options.organisation_name,
            &org,
            &ssa,
        )?;
        write_private(&out.join(format!("{kind}.key")), key_pem.as_bytes())?;
        let path = format!("/organisations/{org}/softwarestatements/{ssa}/certificates/{kind}");
        let certificate = session
            .expect(
                &format!("Upload the {kind} CSR"),
                false,
                admin(Method::POST, &path)
                    .header("content-type", "application/pkcs10")
                    .body(csr_pem),
            )
            .await?;
        let chain = id_of(&certificate.json, "Certificate")?;
        std::fs::write(out.join(format!("{kind}.pem")), chain)
            .map_err(ClientError::io(out.join(format!("{kind}.pem"))))?;
        let kid = id_of(&certificate.json, "KeyId")?;
        report.detail("kid", &kid);
        report.detail("files", &format!("{kind}.pem, {kind}.key (0600)"));
        match kind {
            "transport" => {
                session.profile.transport_certificate = Some("transport.pem".into());
                session.profile.transport_key = Some("transport.key".into());
            }
            _ => {
                session.profile.signing_certificate = Some("signing.pem".into());
                session.profile.signing_key = Some("signing.key".into());
                session.profile.kid = Some(kid);
            }
        }
        session.save()?;
    }
    // Reload so the session presents the transport certificate from here on.
    let mut session = Session::open(out)?;

    report.step(6, TOTAL, "2.1 RC Access Token");
    let rc = session.rc_token().await?;
    report.detail("scope", "directory:software (certificate-bound)");

    report.step(7, TOTAL, "2.2 Get RC SSA");
    let software_statement = session.ssa(&rc).await?;
    report.detail(
        "ssa",
        &format!(
            "{}… ({} bytes, PS256, kid signer)",
            software_statement.chars().take(24).collect::<String>(),
            software_statement.len()
        ),
    );

    report.step(8, TOTAL, "2.3 Dynamic Client Registration");
    if session.profile.registration_client_uri.is_some() {
        report.detail("reused", "already registered: not registering twice");
    } else {
        let registration = session.register(&software_statement).await?;
        report.detail(
            "client_id",
            registration["client_id"].as_str().unwrap_or_default(),
        );
        report.detail("scope", registration["scope"].as_str().unwrap_or_default());
    }

    report.step(9, TOTAL, "Get Access Token");
    session.access_token(true).await?;
    report.detail(
        "scope",
        session
            .profile
            .access_token_scope
            .as_deref()
            .unwrap_or_default(),
    );
    report.detail(
        "expires_at",
        &session
            .profile
            .access_token_expires_at
            .unwrap_or_default()
            .to_string(),
    );
    report.detail(
        "profile",
        &out.join(crate::profile::FILE).display().to_string(),
    );
    Ok(session)
}
