//! The directory console (DESIGN.md section 10): the seed's Raidiam Connect web pages, served at
//! `/console/` on the directory's public listener as server-rendered HTML that works without
//! JavaScript (one small script from the binary adds copy buttons).
//!
//! Every action calls the very functions the admin API's handlers call (`new_organisation`,
//! `new_software_statement`, `issue_from_csr`, `revoke_certificate`), so the console can do
//! nothing the admin API cannot, and a refusal carries the API's own reason, shown next to the
//! field it names. Sign-in takes the admin token; sessions and CSRF tokens are in
//! [`session`]. Every response carries a Content-Security-Policy without `unsafe-inline`,
//! `frame-ancestors 'none'`, `nosniff` and `no-store`.

mod pages;
mod session;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::Markup;
use serde_json::Value;

use certbound_pki::CertificateType;

use crate::certificates::{
    Owner, certificate_type, certificates_of, csr_command_line, issue_from_csr, owned_certificate,
    revoke_certificate,
};
use crate::organisations::{
    Organisation, SoftwareStatement, load_organisation, load_software_statement, new_organisation,
    new_software_statement, organisations, software_statements,
};
use crate::{Directory, DirectoryError};
use pages::{OwnerPage, Refusal, Values};
pub(crate) use session::Sessions;
use session::SignedIn;

/// The console's Content-Security-Policy: its own script and style files, nothing inline,
/// forms posted only to itself, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How many audit events the organisation page shows.
const RECENT_EVENTS: usize = 25;

/// The console's routes, under `/console`.
pub(crate) fn router() -> Router<Arc<Directory>> {
    let certificates = |prefix: &str| {
        Router::new()
            .route(
                &format!("{prefix}/certificates/new/{{kind}}"),
                get(new_certificate_page).post(issue_certificate),
            )
            .route(
                &format!("{prefix}/certificates/{{id}}"),
                get(certificate_page),
            )
            .route(
                &format!("{prefix}/certificates/{{id}}/pem"),
                get(certificate_pem),
            )
            .route(
                &format!("{prefix}/certificates/{{id}}/revoke"),
                get(revoke_page).post(revoke),
            )
    };
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/assets/console.css", get(stylesheet))
        .route("/console/assets/console.js", get(script))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route(
            "/console/organisations",
            get(organisations_page).post(create_organisation),
        )
        .route("/console/organisations/{org}", get(organisation_page))
        .route(
            "/console/organisations/{org}/applications/new",
            get(new_application_page),
        )
        .route(
            "/console/organisations/{org}/applications",
            post(create_application),
        )
        .route(
            "/console/organisations/{org}/softwarestatements/{ss}",
            get(software_statement_page),
        )
        .merge(certificates("/console/organisations/{org}"))
        .merge(certificates(
            "/console/organisations/{org}/softwarestatements/{ss}",
        ))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn now() -> i64 {
    certbound_store::clock::now()
}

fn page(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn see_other(location: String) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

fn to_sign_in() -> Response {
    see_other("/console/sign-in".to_owned())
}

/// A signed-in request: its session, or the request is sent to the sign-in page.
impl axum::extract::FromRequestParts<Arc<Directory>> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        directory: &Arc<Directory>,
    ) -> Result<Self, Self::Rejection> {
        directory
            .console
            .find(&parts.headers, now())
            .ok_or_else(to_sign_in)
    }
}

fn csrf_refused(csrf: Option<&str>) -> Response {
    let forged = DirectoryError::Forbidden(
        "the form came without its CSRF token, or with a wrong one".into(),
    );
    let response = page(
        StatusCode::FORBIDDEN,
        pages::problem(
            csrf,
            "Form refused",
            "The form came without its CSRF token, or with a wrong one: nothing was done. Go back, reload the page and send the form again.",
        ),
    );
    refusing(response, &forged)
}

fn form(body: &[u8]) -> Values {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The API's JSON fields from a form: `strings` as strings, `lists` as arrays of their non-empty
/// values (one per line, or one per repeated field); a list with no value is left out, so the
/// API's own rule says it is required.
fn api_fields(values: &Values, strings: &[&str], lists: &[&str]) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    for name in strings {
        map.insert(
            (*name).to_owned(),
            Value::String(pages::value(values, name).to_owned()),
        );
    }
    for name in lists {
        let items: Vec<Value> = values
            .iter()
            .filter(|(key, _)| key == name)
            .flat_map(|(_, value)| value.lines())
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| Value::String(item.to_owned()))
            .collect();
        if !items.is_empty() {
            map.insert((*name).to_owned(), Value::Array(items));
        }
    }
    map
}

fn refusal(error: &DirectoryError) -> Refusal {
    match error {
        DirectoryError::InvalidField { field, reason } => Refusal {
            field: Some(field),
            reason: reason.clone(),
        },
        DirectoryError::Internal(_) => Refusal {
            field: None,
            reason: "internal error: the server log has the details".to_owned(),
        },
        other => Refusal {
            field: None,
            reason: other.to_string(),
        },
    }
}

/// A page for an error outside any form, with the status the API would answer.
fn failure(csrf: Option<&str>, error: DirectoryError) -> Response {
    let status = error.status();
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Already done",
        StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
        StatusCode::INTERNAL_SERVER_ERROR => "Internal error",
        _ => "Refused",
    };
    let response = page(status, pages::problem(csrf, title, &refusal(&error).reason));
    refusing(response, &error)
}

/// Marks a page that answers a refusal, as the API's are marked: the audit trail records it
/// (with the client's address and the trace id), and an internal error's detail is logged.
fn refusing(mut response: Response, error: &DirectoryError) -> Response {
    match error {
        DirectoryError::Internal(detail) => {
            response
                .extensions_mut()
                .insert(certbound_http::InternalError(detail.clone()));
        }
        other => {
            response.extensions_mut().insert(certbound_http::Refusal {
                code: other.as_str().to_owned(),
                description: other.to_string(),
            });
        }
    }
    response
}

async fn home(State(directory): State<Arc<Directory>>, headers: HeaderMap) -> Response {
    if directory.console.find(&headers, now()).is_some() {
        see_other("/console/organisations".to_owned())
    } else {
        to_sign_in()
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/console.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/console.js"),
    )
        .into_response()
}

/// The sign-in page with a fresh form token (and its cookie); a refusal is marked for the audit
/// trail as `error`.
fn sign_in_form(
    directory: &Directory,
    status: StatusCode,
    refusal: &Refusal,
    error: Option<DirectoryError>,
) -> Response {
    let Some((nonce, token)) = directory.console.sign_in_form(now()) else {
        return failure(None, no_randomness());
    };
    let mut response = page(status, pages::sign_in(&token, refusal));
    response
        .headers_mut()
        .append(header::SET_COOKIE, session::sign_in_cookie(&nonce));
    match error {
        Some(error) => refusing(response, &error),
        None => response,
    }
}

fn no_randomness() -> DirectoryError {
    DirectoryError::TemporarilyUnavailable(
        "the system gives no randomness for session ids: nobody can sign in until it does".into(),
    )
}

async fn sign_in_page(State(directory): State<Arc<Directory>>, headers: HeaderMap) -> Response {
    if directory.console.find(&headers, now()).is_some() {
        return see_other("/console/organisations".to_owned());
    }
    sign_in_form(&directory, StatusCode::OK, &Refusal::default(), None)
}

async fn sign_in(
    State(directory): State<Arc<Directory>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let values = form(&body);
    if !directory
        .console
        .sign_in_csrf_matches(&headers, pages::value(&values, "csrf"), now())
    {
        let refusal = Refusal {
            field: None,
            reason: "The sign-in form came without its CSRF token, or with a wrong one (it lasts 10 minutes): sign in again with this form.".to_owned(),
        };
        let error = DirectoryError::Forbidden(refusal.reason.clone());
        return sign_in_form(&directory, StatusCode::FORBIDDEN, &refusal, Some(error));
    }
    if !directory.is_admin_token(pages::value(&values, "AdminToken")) {
        // The refusal is recorded whether or not the trail can be written: nothing was done.
        let _ = directory.audit.record(
            "directory",
            "console_sign_in_refused",
            now(),
            serde_json::json!({"reason": "wrong admin token"}),
        );
        let refusal = Refusal {
            field: Some("AdminToken"),
            reason: "The admin token is wrong: use the one in DATA_DIR/admin.token.".to_owned(),
        };
        let error = DirectoryError::Unauthorized(refusal.reason.clone());
        return sign_in_form(&directory, StatusCode::UNAUTHORIZED, &refusal, Some(error));
    }
    if let Err(error) = directory.audit.record(
        "directory",
        "console_signed_in",
        now(),
        serde_json::json!({}),
    ) {
        return failure(None, error.into());
    }
    // A new session replaces any the browser had: those end on the server now.
    directory.console.end(&headers);
    let Some(id) = directory.console.start(now()) else {
        return failure(None, no_randomness());
    };
    let mut response = see_other("/console/organisations".to_owned());
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        session::set_cookie(session::SESSION_COOKIE, &id, session::ABSOLUTE),
    );
    headers.append(
        header::SET_COOKIE,
        session::set_cookie(session::SIGN_IN_COOKIE, "", 0),
    );
    response
}

async fn sign_out(
    State(directory): State<Arc<Directory>>,
    session: SignedIn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let values = form(&body);
    if !session.csrf_matches(pages::value(&values, "csrf")) {
        return csrf_refused(Some(&session.csrf));
    }
    directory.console.end(&headers);
    let _ = directory.audit.record(
        "directory",
        "console_signed_out",
        now(),
        serde_json::json!({}),
    );
    let mut response = to_sign_in();
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(session::SESSION_COOKIE, "", 0),
    );
    response
}

async fn organisations_view(
    directory: &Directory,
    session: &SignedIn,
    status: StatusCode,
    values: &Values,
    refusal: &Refusal,
) -> Response {
    match organisations(directory).await {
        Ok(list) => page(
            status,
            pages::organisations(&session.csrf, &list, values, refusal),
        ),
        Err(error) => failure(Some(&session.csrf), error),
    }
}

async fn organisations_page(
    State(directory): State<Arc<Directory>>,
    session: SignedIn,
) -> Response {
    organisations_view(
        &directory,
        &session,
        StatusCode::OK,
        &Values::new(),
        &Refusal::default(),
    )
    .await
}

async fn create_organisation(
    State(directory): State<Arc<Directory>>,
    session: SignedIn,
    body: Bytes,
) -> Response {
    let values = form(&body);
    if !session.csrf_matches(pages::value(&values, "csrf")) {
        return csrf_refused(Some(&session.csrf));
    }
    let map = api_fields(
        &values,
        &["OrganisationName", "RegistrationNumber", "Country"],
        &[],
    );
    match new_organisation(&directory, &map).await {
        Ok(organisation) => see_other(format!(
            "/console/organisations/{}",
            organisation.organisation_id
        )),
        Err(error) => refusing(
            organisations_view(
                &directory,
                &session,
                error.status(),
                &values,
                &refusal(&error),
            )
            .await,
            &error,
        ),
    }
}

/// The organisation's recent events in this instance's audit trail.
fn recent_events(directory: &Directory, organisation_id: &str) -> Vec<pages::AuditLine> {
    directory
        .audit
        .recent(RECENT_EVENTS, |record| {
            record.get("organisation_id").and_then(Value::as_str) == Some(organisation_id)
        })
        .into_iter()
        .map(|record| {
            let at = record
                .get("ts")
                .and_then(Value::as_i64)
                .map(crate::rfc3339)
                .unwrap_or_default();
            let event = record
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let details = record
                .as_object()
                .map(|fields| {
                    fields
                        .iter()
                        .filter(|(key, _)| {
                            !matches!(key.as_str(), "ts" | "part" | "event" | "organisation_id")
                        })
                        .map(|(key, value)| match value {
                            Value::String(text) => format!("{key}={text}"),
                            other => format!("{key}={other}"),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            pages::AuditLine { at, event, details }
        })
        .collect()
}

async fn organisation_page(
    State(directory): State<Arc<Directory>>,
    session: SignedIn,
    Path(organisation_id): Path<String>,
) -> Response {
    let loaded = async {
        let organisation = load_organisation(&directory, &organisation_id).await?;
        let statements = software_statements(&directory, &organisation_id).await?;
        let owner = Owner {
            organisation_id: organisation_id.clone(),
            software_statement_id: None,
        };
        let certificates = certificates_of(&directory, &owner).await?;
        Ok::<_, DirectoryError>((organisation, statements, certificates))
    }
    .await;
    // Reading the trail is file I/O: off the async workers.
    let events = {
        let (directory, organisation_id) = (directory.clone(), organisation_id.clone());
        tokio::task::spawn_blocking(move || recent_events(&directory, &organisation_id))
            .await
            .unwrap_or_default()
    };
    match loaded {
        Ok((organisation, statements, certificates)) => page(
            StatusCode::OK,
            pages::organisation(
                &session.csrf,
                &organisation,
                &statements,
                &certificates,
                &events,
            ),
        ),
        Err(error) => failure(Some(&session.csrf), error),
    }
}

async fn new_application_page(
    State(directory): State<Arc<Directory>>,
    session: SignedIn,
    Path(organisation_id): Path<String>,
) -> Response {
    match load_organisation(&directory, &organisation_id).await {
        Ok(organisation) => page(
            StatusCode::OK,
            pages::new_application(
                &session.csrf,
                &organisation,
                &Values::new(),
                &Refusal::default(),
            ),
        ),
        Err(error) => failure(Some(&session.csrf), error),
    }
}

async fn create_application(
    State(directory): State<Arc<Directory>>,
    session: SignedIn,
    Path(organisation_id): Path<String>,
    body: Bytes,
) -> Response {
    let values = form(&body);
    if !session.csrf_matches(pages::value(&values, "csrf")) {
        return csrf_refused(Some(&session.csrf));
    }
    let organisation = match load_organisation(&directory, &organisation_id).await {
        Ok(organisation) => organisation,
        Err(error) => return failure(Some(&session.csrf), error),
    };
    let map = api_fields(
        &values,
        &[
            "ClientName",
            "Version",
            "HomepageUri",
            "LogoUri",
            "Description",
            "ApiWebhookUri",
            "OnBehalfOf",
            "OriginUri",
        ],
        &["RedirectUri", "Roles"],
    );
    match new_software_statement(&directory, &organisation_id, &map).await {
        Ok(statement) => see_other(format!(
            "/console/organisations/{organisation_id}/softwarestatements/{}",
            statement.software_statement_id
        )),
        Err(error) => refusing(
            page(
                error.status(),
                pages::new_application(&session.csrf, &organisation, &values, &refusal(&error)),
            ),
            &error,
        ),
    }
}

async fn software_statement_page(
    State(directory): State<Arc<Directory>>,
    session: SignedIn,
    Path((organisation_id, statement_id)): Path<(String, String)>,
) -> Response {
    let loaded = async {
        let organisation = load_organisation(&directory, &organisation_id).await?;
        let statement =
            load_software_statement(&directory, &organisation_id, &statement_id).await?;
        let owner = Owner {
            organisation_id: organisation_id.clone(),
            software_statement_id: Some(statement_id.clone()),
        };
        let certificates = certificates_of(&directory, &owner).await?;
        Ok::<_, DirectoryError>((organisation, statement, certificates))
    }
    .await;
    let (organisation, statement, certificates) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return failure(Some(&session.csrf), error),
    };
    let issuer = &directory.config.issuer;
    let keystore = |file: &str| {
        (
            file.to_owned(),
            format!("{issuer}/keystore/{organisation_id}/{statement_id}/{file}"),
        )
    };
    let links = pages::StatementLinks {
        keystore: vec![
            keystore("application.jwks"),
            keystore("transport.jwks"),
            keystore("inactive/application.jwks"),
            keystore("inactive/transport.jwks"),
        ],
        assertion: format!(
            "{}/organisations/{organisation_id}/softwarestatements/{statement_id}/assertion",
            directory.config.mtls_base
        ),
    };
    page(
        StatusCode::OK,
        pages::software_statement(
            &session.csrf,
            &organisation,
            &statement,
            &certificates,
            &links,
        ),
    )
}

/// An organisation, or one of its software statements, named by a certificate page's path.
struct Place {
    organisation: Organisation,
    statement: Option<SoftwareStatement>,
    owner: Owner,
    base: String,
}

impl Place {
    fn page(&self) -> OwnerPage<'_> {
        OwnerPage {
            organisation: &self.organisation,
            statement: self.statement.as_ref(),
            base: self.base.clone(),
        }
    }
}

async fn place(
    directory: &Directory,
    params: &HashMap<String, String>,
) -> Result<Place, DirectoryError> {
    let organisation_id = params.get("org").map(String::as_str).unwrap_or_default();
    let organisation = load_organisation(directory, organisation_id).await?;
    let statement = match params.get("ss") {
        Some(id) => Some(load_software_statement(directory, organisation_id, id).await?),
        None => None,
    };
    let mut base = format!("/console/organisations/{organisation_id}");
    if let Some(statement) = &statement {
        base.push_str(&format!(
            "/softwarestatements/{}",
            statement.software_statement_id
        ));
    }
    Ok(Place {
        owner: Owner {
            organisation_id: organisation_id.to_owned(),
            software_statement_id: statement
                .as_ref()
                .map(|statement| statement.software_statement_id.clone()),
        },
        organisation,
        statement,
        base,
    })
}

fn parameter<'p>(params: &'p HashMap<String, String>, name: &str) -> &'p str {
    params.get(name).map(String::as_str).unwrap_or_default()
}

async fn new_certificate_view(
    directory: &Directory,
    session: &SignedIn,
    params: &HashMap<String, String>,
    pasted: &str,
    status: StatusCode,
    refusal: &Refusal,
) -> Response {
    let shown = async {
        let place = place(directory, params).await?;
        let kind = certificate_type(parameter(params, "kind"))?;
        let command = csr_command_line(directory, &place.owner, kind).await?;
        Ok::<_, DirectoryError>(pages::new_certificate(
            &session.csrf,
            &place.page(),
            kind,
            &command,
            pasted,
            refusal,
        ))
    }
    .await;
    match shown {
        Ok(markup) => page(status, markup),
        Err(error) => failure(Some(&session.csrf), error),
    }
}

async fn new_certificate_page(
    State(directory): State<Arc<Directory>>,
    session: SignedIn,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    new_certificate_view(
        &directory,
        &session,
        &params,
        "",
        StatusCode::OK,
        &Refusal::default(),
    )
    .await
}

/// The fields of the certificate form: its CSRF token, the uploaded file and the pasted text.
#[derive(Default)]
struct CsrForm {
    csrf: String,
    file: Vec<u8>,
    pasted: String,
}

async fn csr_form(mut multipart: Multipart) -> Result<CsrForm, String> {
    let mut form = CsrForm::default();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|error| error.body_text())?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(|error| error.body_text())?;
        match name.as_str() {
            "csrf" => form.csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "CsrFile" => form.file = bytes.to_vec(),
            "Csr" => form.pasted = String::from_utf8_lossy(&bytes).into_owned(),
            _ => {}
        }
    }
    Ok(form)
}

/// A CSR as PEM: PEM passes through; a DER file (a SEQUENCE) is wrapped.
fn csr_pem(bytes: &[u8]) -> Vec<u8> {
    if bytes.first() == Some(&0x30) {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        return format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{encoded}\n-----END CERTIFICATE REQUEST-----\n"
        )
        .into_bytes();
    }
    bytes.to_vec()
}

async fn issue_certificate(
    State(directory): State<Arc<Directory>>,
    session: SignedIn,
    Path(params): Path<HashMap<String, String>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let parsed = match multipart {
        Ok(multipart) => csr_form(multipart).await,
        Err(rejection) => Err(rejection.body_text()),
    };
    let form = match parsed {
        Ok(form) => form,
        Err(reason) => {
            return page(
                StatusCode::BAD_REQUEST,
                pages::problem(
                    Some(&session.csrf),
                    "Refused",
                    &format!(
                        "The form could not be read ({reason}): send it from the console's New certificate page."
                    ),
                ),
            );
        }
    };
    if !session.csrf_matches(&form.csrf) {
        return csrf_refused(Some(&session.csrf));
    }
    let csr = if form.file.is_empty() {
        form.pasted.trim().as_bytes().to_vec()
    } else {
        csr_pem(&form.file)
    };
    let issued = async {
        let place = place(&directory, &params).await?;
        let kind: CertificateType = certificate_type(parameter(&params, "kind"))?;
        if csr.is_empty() {
            return Err(DirectoryError::field(
                "Csr",
                "Csr: choose the CSR file the command wrote, or paste it",
            ));
        }
        let record = issue_from_csr(&directory, place.owner.clone(), kind, &csr).await?;
        Ok::<_, DirectoryError>(format!("{}/certificates/{}", place.base, record.id))
    }
    .await;
    match issued {
        Ok(location) => see_other(location),
        Err(error) => refusing(
            new_certificate_view(
                &directory,
                &session,
                &params,
                &form.pasted,
                error.status(),
                &refusal(&error),
            )
            .await,
            &error,
        ),
    }
}

/// The place and the certificate a certificate page's path names.
async fn certificate_at(
    directory: &Directory,
    params: &HashMap<String, String>,
) -> Result<(Place, certbound_store::CertificateRecord), DirectoryError> {
    let place = place(directory, params).await?;
    let record = owned_certificate(directory, &place.owner, parameter(params, "id")).await?;
    Ok((place, record))
}

async fn certificate_page(
    State(directory): State<Arc<Directory>>,
    session: SignedIn,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    match certificate_at(&directory, &params).await {
        Ok((place, record)) => page(
            StatusCode::OK,
            pages::certificate(&session.csrf, &place.page(), &record),
        ),
        Err(error) => failure(Some(&session.csrf), error),
    }
}

async fn certificate_pem(
    State(directory): State<Arc<Directory>>,
    session: SignedIn,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    match certificate_at(&directory, &params).await {
        Ok((place, record)) => {
            // Named like the key and CSR the command wrote: <CN>_<type>.pem.
            let common_name = place
                .owner
                .software_statement_id
                .as_deref()
                .unwrap_or(&place.owner.organisation_id);
            let disposition = format!(
                "attachment; filename=\"{common_name}_{}.pem\"",
                record.certificate_type
            );
            (
                [
                    (header::CONTENT_TYPE, "application/x-pem-file".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                record.chain_pem,
            )
                .into_response()
        }
        Err(error) => failure(Some(&session.csrf), error),
    }
}

async fn revoke_page(
    State(directory): State<Arc<Directory>>,
    session: SignedIn,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    match certificate_at(&directory, &params).await {
        Ok((place, record)) => page(
            StatusCode::OK,
            pages::revoke(&session.csrf, &place.page(), &record, &Refusal::default()),
        ),
        Err(error) => failure(Some(&session.csrf), error),
    }
}

async fn revoke(
    State(directory): State<Arc<Directory>>,
    session: SignedIn,
    Path(params): Path<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let values = form(&body);
    if !session.csrf_matches(pages::value(&values, "csrf")) {
        return csrf_refused(Some(&session.csrf));
    }
    let (place, record) = match certificate_at(&directory, &params).await {
        Ok(found) => found,
        Err(error) => return failure(Some(&session.csrf), error),
    };
    match revoke_certificate(&directory, &place.owner, &record.id).await {
        Ok(()) => see_other(format!("{}/certificates/{}", place.base, record.id)),
        Err(error) => refusing(
            page(
                error.status(),
                pages::revoke(&session.csrf, &place.page(), &record, &refusal(&error)),
            ),
            &error,
        ),
    }
}
