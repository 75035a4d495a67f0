//! Client authentication at the token, introspection and revocation endpoints, as the client
//! registered: `private_key_jwt` (RFC 7523, keys from its `jwks_uri`), `tls_client_auth`
//! (RFC 8705 §2.1, a directory certificate with the registered subject DN) or
//! `self_signed_tls_client_auth` (RFC 8705 §2.2, a certificate whose `x5t#S256` the client
//! publishes). A client certificate is required in every case: it is what tokens are bound to.

use std::collections::BTreeMap;
use std::sync::Arc;

use certbound_http::PeerCertificate;
use certbound_jose::{AssertionRules, verify_client_assertion};
use certbound_store::{CertificateRecord, ClientRecord};
use certbound_trust::{Acceptor, AuthMethod, CertificateStanding, Jti, JtiUse};
use serde_json::Value;

use crate::registration::{ClientMetadata, normalise_dn};
use crate::{Authz, AuthzError};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An authenticated client.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) record: ClientRecord,
    pub(crate) metadata: ClientMetadata,
}

/// Authenticates the client of a form request presenting `peer`: finds the client and the
/// presented certificate's record (one statement, the hot path), then applies the method the
/// client registered. The client is shared with the memory of clients, not copied.
pub(crate) async fn authenticate(
    authz: &Authz,
    peer: Option<&PeerCertificate>,
    form: &BTreeMap<String, String>,
    now: i64,
) -> Result<Arc<Client>, AuthzError> {
    let peer = peer.ok_or_else(|| {
        AuthzError::InvalidClient(
            "no client certificate: certificate-bound tokens need mutual TLS with your transport certificate".into(),
        )
    })?;
    let assertion = form.get("client_assertion").map(String::as_str);
    let claimed = match (form.get("client_id"), assertion) {
        (Some(client_id), _) => client_id.clone(),
        (None, Some(assertion)) => certbound_jose::unverified_claims(assertion)
            .and_then(|claims| claims.get("iss").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| {
                AuthzError::InvalidClient("client_assertion is not a JWT with an iss claim".into())
            })?,
        (None, None) => {
            return Err(AuthzError::InvalidClient(
                "authenticate the client: send client_assertion (private_key_jwt) or client_id (tls_client_auth)".into(),
            ));
        }
    };
    let known = client_and_certificate(authz, &claimed, &peer.thumbprint).await?;
    let client = known.0.clone().ok_or_else(|| {
        AuthzError::InvalidClient(format!("unknown client `{claimed}`: register it first"))
    })?;
    let presented = Presented {
        peer,
        record: known.1.as_ref(),
    };
    match client.metadata.token_endpoint_auth_method {
        AuthMethod::PrivateKeyJwt => {
            let assertion = assertion.ok_or_else(|| {
                AuthzError::InvalidClient(
                    "this client authenticates with private_key_jwt: send a client_assertion"
                        .into(),
                )
            })?;
            if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
                return Err(AuthzError::InvalidClient(format!(
                    "client_assertion_type must be {JWT_BEARER}"
                )));
            }
            private_key_jwt(authz, &client, &presented, assertion, now).await?;
        }
        AuthMethod::TlsClientAuth => {
            refuse_assertion(assertion, "tls_client_auth")?;
            tls_client_auth(&client, &presented, now)?;
        }
        AuthMethod::SelfSignedTlsClientAuth => {
            refuse_assertion(assertion, "self_signed_tls_client_auth")?;
            self_signed_tls_client_auth(authz, &client, &presented, now).await?;
        }
    }
    Ok(client)
}

/// A registered client (its metadata parsed) and the directory's record of a certificate.
pub(crate) type ClientAndCertificate = Arc<(Option<Arc<Client>>, Option<CertificateRecord>)>;

/// The client claimed and the directory's record of the presented certificate: from memory
/// while the store's trust counter stands still (DESIGN.md section 7), else one statement. Only
/// a pair where both exist is remembered, so a new registration or certificate counts at once.
async fn client_and_certificate(
    authz: &Authz,
    claimed: &str,
    thumbprint: &str,
) -> Result<ClientAndCertificate, AuthzError> {
    let key = format!("{thumbprint}|{claimed}");
    authz
        .clients
        .get(
            authz.store.as_ref(),
            &key,
            || async {
                let (record, presented) = authz
                    .store
                    .client_and_certificate(claimed, thumbprint)
                    .await?;
                let client = match record {
                    Some(record) => {
                        let metadata: ClientMetadata = serde_json::from_str(&record.metadata)
                            .map_err(|error| AuthzError::Internal(error.to_string()))?;
                        Some(Arc::new(Client { record, metadata }))
                    }
                    None => None,
                };
                Ok(Arc::new((client, presented)))
            },
            |known: &ClientAndCertificate| known.0.is_some() && known.1.is_some(),
        )
        .await
}

/// The certificate on the connection, and the directory's record of it (none for a self-signed
/// one, RFC 8705 §2.2).
struct Presented<'a> {
    peer: &'a PeerCertificate,
    record: Option<&'a CertificateRecord>,
}

impl Presented<'_> {
    /// Its standing as a transport certificate of the client's organisation (and of its very
    /// software, if given).
    fn standing(
        &self,
        client: &Client,
        software_id: Option<&str>,
        now: i64,
    ) -> CertificateStanding {
        certbound_trust::certificate_standing(
            self.record.map_or(&[], std::slice::from_ref),
            certbound_trust::Use {
                role: certbound_pki::CertificateType::Transport.as_str(),
                organisation_id: Some(&client.record.organisation_id),
                software_id,
            },
            now,
        )
    }
}

fn refuse(standing: CertificateStanding) -> AuthzError {
    AuthzError::InvalidClient(format!("the client certificate {}", standing.description()))
}

/// Revoked, expired and not-yet-valid certificates are refused whatever the method.
fn refuse_unusable(standing: CertificateStanding) -> Result<(), AuthzError> {
    match standing {
        CertificateStanding::Revoked
        | CertificateStanding::Expired
        | CertificateStanding::NotYetValid => Err(refuse(standing)),
        _ => Ok(()),
    }
}

/// RFC 7523 over mTLS: a directory transport certificate of the client's organisation, and an
/// assertion (the rules of DESIGN.md section 3) signed by one of the software's signing keys,
/// its `jti` used once.
async fn private_key_jwt(
    authz: &Authz,
    client: &Client,
    presented: &Presented<'_>,
    assertion: &str,
    now: i64,
) -> Result<(), AuthzError> {
    let (record, metadata) = (&client.record, &client.metadata);
    match presented.standing(client, None, now) {
        CertificateStanding::Good if presented.peer.issued_by_directory => {}
        CertificateStanding::Good | CertificateStanding::Unknown => {
            return Err(AuthzError::InvalidClient(
                "the client certificate must be a directory transport certificate of the client's organisation".into(),
            ));
        }
        refused => return Err(refuse(refused)),
    }
    let kid = certbound_jose::unverified_kid(assertion);
    let keys = authz
        .key_cache
        .keys(&metadata.jwks_uri, kid.as_deref(), now)
        .await
        .map_err(|error| AuthzError::Internal(format!("client JWKS unavailable: {error}")))?;
    let audiences: Vec<String> = if authz.config.strict_audience {
        vec![authz.config.issuer.clone()]
    } else {
        vec![authz.config.issuer.clone(), authz.endpoint("/oauth2/token")]
    };
    if authz.config.strict_audience
        && certbound_jose::unverified_claims(assertion)
            .is_some_and(|claims| !claims.get("aud").is_some_and(Value::is_string))
    {
        return Err(AuthzError::InvalidClient(
            "client assertion aud must be the issuer, as a string".into(),
        ));
    }
    let aliases = [record.software_id.clone()];
    let rules = AssertionRules {
        client_id: &record.client_id,
        client_id_aliases: &aliases,
        audiences: &audiences,
        algorithms: &authz.config.algorithms,
        now,
        max_lifetime: authz.config.assertion_max_lifetime,
    };
    let verified = verify_client_assertion(assertion, &keys, &rules)
        .map_err(|error| AuthzError::InvalidClient(error.to_string()))?;
    let standing = signing_key_standing(
        authz,
        &verified.kid,
        &record.organisation_id,
        &record.software_id,
        now,
    )
    .await?;
    if standing != CertificateStanding::Good {
        return Err(AuthzError::InvalidClient(format!(
            "the key that signed the client assertion (kid {}) {}",
            verified.kid,
            standing.description()
        )));
    }
    if let Some(alg) = &metadata.token_endpoint_auth_signing_alg
        && certbound_jose::unverified_header(assertion)
            .and_then(|header| header.get("alg").cloned())
            != Some(Value::from(alg.as_str()))
    {
        return Err(AuthzError::InvalidClient(format!(
            "this client registered {alg} for its assertions"
        )));
    }
    let used = certbound_trust::use_jti_once(
        authz.store.as_ref(),
        Acceptor::AuthorizationServer,
        &record.client_id,
        &Jti::new(verified.jti.clone()),
        verified.exp,
        now,
    )
    .await?;
    if used == JtiUse::Replayed {
        return Err(AuthzError::InvalidClient(used.description().into()));
    }
    Ok(())
}

/// RFC 8705 §2.1: the directory transport certificate of this very software, with the subject
/// the client registered.
fn tls_client_auth(client: &Client, presented: &Presented<'_>, now: i64) -> Result<(), AuthzError> {
    let standing = presented.standing(client, Some(&client.record.software_id), now);
    refuse_unusable(standing)?;
    let info = certbound_pki::CertificateInfo::parse(&presented.peer.der)
        .map_err(|error| AuthzError::InvalidClient(error.0))?;
    if !presented.peer.issued_by_directory
        || standing != CertificateStanding::Good
        || normalise_dn(&info.subject) != normalise_dn(&client.metadata.tls_client_auth_subject_dn)
    {
        return Err(AuthzError::InvalidClient(
            "tls_client_auth: the certificate is not the directory certificate registered for this client".into(),
        ));
    }
    Ok(())
}

/// RFC 8705 §2.2: a certificate whose `x5t#S256` the client publishes in its keystore; a
/// directory certificate presented this way still must be usable.
async fn self_signed_tls_client_auth(
    authz: &Authz,
    client: &Client,
    presented: &Presented<'_>,
    now: i64,
) -> Result<(), AuthzError> {
    if presented.record.is_some() {
        refuse_unusable(presented.standing(client, None, now))?;
    }
    let metadata = &client.metadata;
    let mut registered = false;
    for uri in std::iter::once(&metadata.jwks_uri).chain(metadata.jwks_transport_uri.iter()) {
        registered = authz
            .key_cache
            .publishes_thumbprint(uri, &presented.peer.thumbprint, now)
            .await
            .map_err(AuthzError::Internal)?;
        if registered {
            break;
        }
    }
    if !registered {
        return Err(AuthzError::InvalidClient(
            "self_signed_tls_client_auth: the certificate is not among the client's published keys"
                .into(),
        ));
    }
    Ok(())
}

/// The standing of the key with this `kid` as a signing key of `software_id` in
/// `organisation_id`, now. Whatever verified a client assertion or a signed registration
/// request must be one: the published keystore may be cached, the directory's record is not, so
/// a revoked key is refused at once, and an encryption or transport key signs nothing.
pub(crate) async fn signing_key_standing(
    authz: &Authz,
    kid: &str,
    organisation_id: &str,
    software_id: &str,
    now: i64,
) -> Result<CertificateStanding, AuthzError> {
    let certificates: Arc<Vec<CertificateRecord>> = authz
        .signing_certificates
        .get(
            authz.store.as_ref(),
            kid,
            || async {
                Ok::<_, AuthzError>(Arc::new(authz.store.certificates_by_key_id(kid).await?))
            },
            |found: &Arc<Vec<CertificateRecord>>| !found.is_empty(),
        )
        .await?;
    Ok(certbound_trust::certificate_standing(
        &certificates,
        certbound_trust::Use {
            role: certbound_pki::CertificateType::Signing.as_str(),
            organisation_id: Some(organisation_id),
            software_id: Some(software_id),
        },
        now,
    ))
}

/// The presented certificate must be a transport certificate of `software_id` in
/// `organisation_id`, valid and unrevoked now (registration: the SSA's very software).
pub(crate) async fn require_transport_certificate(
    authz: &Authz,
    peer: &PeerCertificate,
    organisation_id: &str,
    software_id: &str,
    now: i64,
) -> Result<(), AuthzError> {
    let presented = authz
        .store
        .certificate_by_thumbprint(&peer.thumbprint)
        .await?;
    let standing = certbound_trust::certificate_standing(
        presented.as_slice(),
        certbound_trust::Use {
            role: certbound_pki::CertificateType::Transport.as_str(),
            organisation_id: Some(organisation_id),
            software_id: Some(software_id),
        },
        now,
    );
    let message = format!("the client certificate {}", standing.description());
    match standing {
        CertificateStanding::Good => Ok(()),
        CertificateStanding::Revoked
        | CertificateStanding::Expired
        | CertificateStanding::NotYetValid => Err(AuthzError::InvalidClient(message)),
        CertificateStanding::Unknown
        | CertificateStanding::WrongOrganisation
        | CertificateStanding::WrongRole
        | CertificateStanding::WrongSoftware => {
            Err(AuthzError::UnapprovedSoftwareStatement(message))
        }
    }
}

fn refuse_assertion(assertion: Option<&str>, method: &str) -> Result<(), AuthzError> {
    match assertion {
        Some(_) => Err(AuthzError::InvalidClient(format!(
            "this client authenticates with {method}: do not send a client_assertion"
        ))),
        None => Ok(()),
    }
}
