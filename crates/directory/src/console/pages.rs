//! The console's pages: compile-time-checked templates (maud escapes every value it inserts).
//! Each form field is labelled and names the API field it fills; a refusal is shown next to the
//! field it concerns, with the API's own words.

use maud::{DOCTYPE, Markup, html};

use certbound_pki::CertificateType;
use certbound_store::CertificateRecord;

use crate::ROLES;
use crate::organisations::{Organisation, SoftwareStatement};

/// A refusal to show on a form: the field it concerns (when the API names one) and the reason.
#[derive(Debug, Default)]
pub(crate) struct Refusal {
    pub(crate) field: Option<&'static str>,
    pub(crate) reason: String,
}

impl Refusal {
    fn of(&self, field: &str) -> Option<&str> {
        (self.field == Some(field)).then_some(self.reason.as_str())
    }
}

/// What a form was sent with, to show it again with its refusal.
pub(crate) type Values = Vec<(String, String)>;

/// The first value of field `name` in a form (empty when absent).
pub(crate) fn value<'v>(values: &'v Values, name: &str) -> &'v str {
    values
        .iter()
        .find(|(key, _)| key == name)
        .map_or("", |(_, value)| value.as_str())
}

/// The page frame: header with navigation and sign-out (when signed in), breadcrumbs, title.
pub(crate) fn layout(
    title: &str,
    csrf: Option<&str>,
    breadcrumbs: &[(&str, String)],
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · certbound directory" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to the content" }
                header.top {
                    a href="/console/" { "certbound directory" }
                    @if let Some(csrf) = csrf {
                        nav aria-label="Console" {
                            a href="/console/organisations" { "Organisations" }
                            form method="post" action="/console/sign-out" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                p.visually-hidden #copy-status role="status" aria-live="polite" {}
                main #main {
                    @if !breadcrumbs.is_empty() {
                        nav aria-label="Breadcrumbs" {
                            ol.breadcrumbs {
                                @for (name, href) in breadcrumbs {
                                    li { a href=(href) { (name) } }
                                }
                            }
                        }
                    }
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A labelled text input with its hint and refusal.
fn text_field(
    name: &str,
    label: &str,
    hint: Option<&str>,
    values: &Values,
    refusal: &Refusal,
    required: bool,
) -> Markup {
    let error = refusal.of(name);
    let described = match (hint.is_some(), error.is_some()) {
        (true, true) => Some(format!("{name}-hint {name}-error")),
        (false, true) => Some(format!("{name}-error")),
        (true, false) => Some(format!("{name}-hint")),
        (false, false) => None,
    };
    html! {
        div.field {
            label for=(name) { (label) @if !required { " (optional)" } }
            @if let Some(hint) = hint { span.hint #{(name) "-hint"} { (hint) } }
            input type="text" id=(name) name=(name) value=(value(values, name))
                required[required] aria-invalid=[error.map(|_| "true")]
                aria-describedby=[described];
            @if let Some(error) = error { p.error #{(name) "-error"} role="alert" { (error) } }
        }
    }
}

/// A value shown in full with a copy button (the button appears with the script).
fn copyable(id: &str, text: &str) -> Markup {
    html! {
        code.value #(id) { (text) }
        button.copy type="button" data-copy-from=(id) hidden {
            span.copy-label { "Copy" } span.visually-hidden { " " (id) }
        }
    }
}

/// A page-wide notice (a refusal that concerns no one field).
fn notice(refusal: &Refusal) -> Markup {
    html! {
        @if refusal.field.is_none() && !refusal.reason.is_empty() {
            p.notice.bad role="alert" { (refusal.reason) }
        }
    }
}

/// Sign-in with the admin token.
pub(crate) fn sign_in(csrf: &str, refusal: &Refusal) -> Markup {
    let error = refusal.of("AdminToken");
    layout(
        "Sign in",
        None,
        &[],
        html! {
            p.lead { "The console does what the directory's admin API does, page by page: organisations, applications (software statements) with their roles, and certificates from your CSRs." }
            (notice(refusal))
            form.stacked method="post" action="/console/sign-in" {
                input type="hidden" name="csrf" value=(csrf);
                div.field {
                    label for="AdminToken" { "Admin token" }
                    span.hint #AdminToken-hint { "The operator's token: the file admin.token in the data directory." }
                    input type="password" id="AdminToken" name="AdminToken" required autocomplete="off"
                        aria-invalid=[error.map(|_| "true")]
                        aria-describedby=(if error.is_some() { "AdminToken-hint AdminToken-error" } else { "AdminToken-hint" });
                    @if let Some(error) = error { p.error #AdminToken-error role="alert" { (error) } }
                }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// The organisations and the form that creates one.
pub(crate) fn organisations(
    csrf: &str,
    organisations: &[Organisation],
    values: &Values,
    refusal: &Refusal,
) -> Markup {
    layout(
        "Organisations",
        Some(csrf),
        &[],
        html! {
            @if organisations.is_empty() {
                p { "No organisation yet: create the first below." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr { th scope="col" { "Name" } th scope="col" { "OrganisationId" } th scope="col" { "Country" } th scope="col" { "Status" } } }
                        tbody {
                            @for organisation in organisations {
                                tr {
                                    td { a href={"/console/organisations/" (organisation.organisation_id)} { (organisation.organisation_name) } }
                                    td { code { (organisation.organisation_id) } }
                                    td { (organisation.country.as_deref().unwrap_or("")) }
                                    td { (organisation.status) }
                                }
                            }
                        }
                    }
                }
            }
            h2 #new { "New organisation" }
            (notice(refusal))
            form.stacked method="post" action="/console/organisations" {
                input type="hidden" name="csrf" value=(csrf);
                (text_field("OrganisationName", "Name", None, values, refusal, true))
                (text_field("RegistrationNumber", "Registration number", None, values, refusal, false))
                (text_field("Country", "Country", Some("ISO 3166-1 alpha-2, such as GB: it goes into the certificates' subject (C)."), values, refusal, false))
                button type="submit" { "Create the organisation" }
            }
        },
    )
}

fn organisation_breadcrumbs(organisation: &Organisation) -> Vec<(&str, String)> {
    vec![
        ("Organisations", "/console/organisations".to_owned()),
        (
            organisation.organisation_name.as_str(),
            format!("/console/organisations/{}", organisation.organisation_id),
        ),
    ]
}

/// The certificates of one owner, with their actions, and the links that make new ones.
fn certificates_section(base: &str, certificates: &[CertificateRecord], heading: &str) -> Markup {
    html! {
        h2 #certificates { (heading) }
        @if certificates.is_empty() {
            p { "No certificate yet." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr {
                        th scope="col" { "Key type" } th scope="col" { "kid" } th scope="col" { "Serial" }
                        th scope="col" { "Valid" } th scope="col" { "Status" } th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for record in certificates {
                            @let key_type = record.certificate_type.parse::<CertificateType>().map(CertificateType::key_type).unwrap_or_default();
                            @let status = if record.revoked_at.is_some() { "Revoked" } else { "Active" };
                            tr {
                                td { (key_type) }
                                td { (copyable(&format!("kid-{}", record.id), &record.key_id)) }
                                td { code { (record.serial_hex) } }
                                td { (crate::rfc3339(record.not_before)) " to " (crate::rfc3339(record.not_after)) }
                                td { span class={"status-" (status)} { (status) } }
                                td.actions {
                                    a href={(base) "/certificates/" (record.id)} { "Details" }
                                    a href={(base) "/certificates/" (record.id) "/pem"} download { "Download" }
                                    @if record.revoked_at.is_none() {
                                        a href={(base) "/certificates/" (record.id) "/revoke"} { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        p.actions {
            @for kind in [CertificateType::Transport, CertificateType::Signing, CertificateType::Encryption] {
                a.button.secondary href={(base) "/certificates/new/" (kind.as_str())} { "New " (kind.as_str()) " certificate" }
            }
        }
    }
}

/// One line of the audit trail, as the organisation page lists it.
pub(crate) struct AuditLine {
    pub(crate) at: String,
    pub(crate) event: String,
    pub(crate) details: String,
}

/// An organisation: its details, applications, own certificates and recent audit events.
pub(crate) fn organisation(
    csrf: &str,
    organisation: &Organisation,
    statements: &[SoftwareStatement],
    certificates: &[CertificateRecord],
    events: &[AuditLine],
) -> Markup {
    let base = format!("/console/organisations/{}", organisation.organisation_id);
    let crumbs = organisation_breadcrumbs(organisation);
    layout(
        &organisation.organisation_name,
        Some(csrf),
        crumbs.get(..1).unwrap_or_default(),
        html! {
            dl.facts {
                dt { "Organisation ID (org_id)" } dd { (copyable("org_id", &organisation.organisation_id)) }
                @if let Some(number) = &organisation.registration_number { dt { "Registration number" } dd { (number) } }
                @if let Some(country) = &organisation.country { dt { "Country" } dd { (country) } }
                dt { "Status" } dd { (organisation.status) }
                dt { "Created" } dd { (organisation.created_on) }
            }
            h2 #applications { "Applications" }
            @if statements.is_empty() {
                p { "No application yet." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Application ID (ssa_id)" } th scope="col" { "Roles" } } }
                        tbody {
                            @for statement in statements {
                                tr {
                                    td { a href={(base) "/softwarestatements/" (statement.software_statement_id)} { (statement.client_name) } }
                                    td { code { (statement.software_statement_id) } }
                                    td { (statement.roles.join(", ")) }
                                }
                            }
                        }
                    }
                }
            }
            p { a.button href={(base) "/applications/new"} { "New application" } }
            (certificates_section(&base, certificates, "Organisation certificates"))
            h2 #audit { "Recent events" }
            @if events.is_empty() {
                p { "No event of this organisation among the latest records of this instance's audit trail." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr { th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Details" } } }
                        tbody {
                            @for line in events {
                                tr { td { (line.at) } td { (line.event) } td { code { (line.details) } } }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The seed's "Create an Application" wizard, on one page.
pub(crate) fn new_application(
    csrf: &str,
    organisation: &Organisation,
    values: &Values,
    refusal: &Refusal,
) -> Markup {
    let base = format!("/console/organisations/{}", organisation.organisation_id);
    let roles_error = refusal.of("Roles");
    layout(
        "New application",
        Some(csrf),
        &organisation_breadcrumbs(organisation),
        html! {
            p.lead { "A software statement: what the SSA will say about your client. Its roles decide every scope it may ever hold." }
            (notice(refusal))
            form.stacked method="post" action={(base) "/applications"} {
                input type="hidden" name="csrf" value=(csrf);
                (text_field("ClientName", "Client name", Some("Such as Test Company App 1."), values, refusal, true))
                (text_field("Version", "Version", Some("Such as 1.0."), values, refusal, true))
                (text_field("HomepageUri", "Homepage URI", Some("An absolute https URI."), values, refusal, true))
                (text_field("LogoUri", "Logo URI", Some("An https URI of an image file, such as https://example.com/logo.png."), values, refusal, true))
                @let redirect_error = refusal.of("RedirectUri");
                div.field {
                    label for="RedirectUri" { "Redirect URIs" }
                    span.hint #RedirectUri-hint { "One absolute https URI per line, such as https://example.com/callback." }
                    textarea id="RedirectUri" name="RedirectUri" required
                        aria-invalid=[redirect_error.map(|_| "true")]
                        aria-describedby=(if redirect_error.is_some() { "RedirectUri-hint RedirectUri-error" } else { "RedirectUri-hint" }) { (value(values, "RedirectUri")) }
                    @if let Some(error) = redirect_error { p.error #RedirectUri-error role="alert" { (error) } }
                }
                fieldset aria-describedby=[roles_error.map(|_| "Roles-error")] {
                    legend { "Roles" }
                    @for role in ROLES {
                        @let id = format!("role-{}", role.name);
                        @let checked = values.iter().any(|(key, value)| key == "Roles" && value == role.name);
                        div.role {
                            input type="checkbox" id=(id) name="Roles" value=(role.name) checked[checked];
                            label for=(id) { strong { (role.name) } ": " (role.description) }
                            span.scopes { "Scopes: " (role.scopes.join(" ")) }
                        }
                    }
                    @if let Some(error) = roles_error { p.error #Roles-error role="alert" { (error) } }
                }
                (text_field("Description", "Description", None, values, refusal, false))
                (text_field("ApiWebhookUri", "API webhook URI", Some("Where the Cards API sends events, if anywhere: an absolute https URI."), values, refusal, false))
                (text_field("OnBehalfOf", "On behalf of", None, values, refusal, false))
                (text_field("OriginUri", "Origin URI", None, values, refusal, false))
                button type="submit" { "Create the application" }
            }
        },
    )
}

/// What the software statement page links to.
pub(crate) struct StatementLinks {
    pub(crate) keystore: Vec<(String, String)>,
    pub(crate) assertion: String,
}

/// A software statement: the Postman variables, its keystore and SSA links, its certificates.
pub(crate) fn software_statement(
    csrf: &str,
    organisation: &Organisation,
    statement: &SoftwareStatement,
    certificates: &[CertificateRecord],
    links: &StatementLinks,
) -> Markup {
    let base = format!(
        "/console/organisations/{}/softwarestatements/{}",
        organisation.organisation_id, statement.software_statement_id
    );
    let signing_kid = certificates
        .iter()
        .rev()
        .find(|record| {
            record.revoked_at.is_none()
                && record.certificate_type == CertificateType::Signing.as_str()
        })
        .map(|record| record.key_id.as_str());
    layout(
        &statement.client_name,
        Some(csrf),
        &organisation_breadcrumbs(organisation),
        html! {
            h2 #variables { "Variables for the Postman collection" }
            p.lead { "What the seed's \"Get Variables for the Postman Collection\" asks for. certbound's own profile takes the same values." }
            dl.facts {
                dt { "org_id" } dd { (copyable("org_id", &organisation.organisation_id)) }
                dt { "ssa_id" } dd { (copyable("ssa_id", &statement.software_statement_id)) }
                dt { "client_id" } dd { (copyable("client_id", &statement.client_id)) }
                dt { "kid" } dd {
                    @if let Some(kid) = signing_kid { (copyable("kid", kid)) }
                    @else { "No active signing certificate yet: make one below (" a href={(base) "/certificates/new/signing"} { "New signing certificate" } ")." }
                }
            }
            h2 #details { "Application" }
            dl.facts {
                dt { "Version" } dd { (statement.version) }
                dt { "Roles" } dd { (statement.roles.join(", ")) }
                dt { "Scopes" } dd { (crate::organisations::scopes_of(&statement.roles).join(" ")) }
                dt { "Homepage" } dd { (statement.homepage_uri) }
                dt { "Redirect URIs" } dd { (statement.redirect_uri.join(" ")) }
                @if let Some(webhook) = &statement.api_webhook_uri { dt { "API webhook URI" } dd { (webhook) } }
                dt { "Status" } dd { (statement.status) }
            }
            h2 #keystore { "Keystore and SSA" }
            ul {
                @for (name, href) in &links.keystore {
                    li { a href=(href) { (name) } }
                }
                li {
                    "The SSA: " code { (links.assertion) }
                    span.hint { "It is served over mutual TLS to the software's own directory token: certbound ssa --profile DIR fetches it." }
                }
            }
            (certificates_section(&base, certificates, "Certificates"))
        },
    )
}

/// Where a certificate page sits: its owner's name and page.
pub(crate) struct OwnerPage<'a> {
    pub(crate) organisation: &'a Organisation,
    pub(crate) statement: Option<&'a SoftwareStatement>,
    pub(crate) base: String,
}

impl OwnerPage<'_> {
    fn breadcrumbs(&self) -> Vec<(&str, String)> {
        let mut crumbs = organisation_breadcrumbs(self.organisation);
        if let Some(statement) = self.statement {
            crumbs.push((statement.client_name.as_str(), self.base.clone()));
        }
        crumbs
    }
}

/// "New certificate": the CSR command to copy, and the CSR by file or pasted.
pub(crate) fn new_certificate(
    csrf: &str,
    owner: &OwnerPage<'_>,
    kind: CertificateType,
    command: &str,
    pasted: &str,
    refusal: &Refusal,
) -> Markup {
    let error = refusal.of("Csr");
    layout(
        &format!("New {} certificate", kind.as_str()),
        Some(csrf),
        &owner.breadcrumbs(),
        html! {
            ol {
                li {
                    "Run this command in a terminal, in an empty directory: it makes the private key (which stays with you) and the CSR."
                    pre #csr-command { (command) }
                    button.copy type="button" data-copy-from="csr-command" hidden { span.copy-label { "Copy the command" } }
                }
                li { "Upload the CSR it wrote (the .csr file), or paste it." }
            }
            (notice(refusal))
            form.stacked method="post" enctype="multipart/form-data" action={(owner.base) "/certificates/new/" (kind.as_str())} {
                input type="hidden" name="csrf" value=(csrf);
                div.field {
                    label for="CsrFile" { "CSR file" }
                    input type="file" id="CsrFile" name="CsrFile" accept=".csr,.pem,.req,application/pkcs10"
                        aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| "Csr-error")];
                }
                div.field {
                    label for="Csr" { "or paste the CSR (PEM)" }
                    textarea id="Csr" name="Csr" aria-invalid=[error.map(|_| "true")]
                        aria-describedby=[error.map(|_| "Csr-error")] { (pasted) }
                    @if let Some(error) = error { p.error #Csr-error role="alert" { (error) } }
                }
                button type="submit" { "Upload and sign" }
            }
        },
    )
}

/// One certificate: its facts, download and revocation.
pub(crate) fn certificate(csrf: &str, owner: &OwnerPage<'_>, record: &CertificateRecord) -> Markup {
    let key_type = record
        .certificate_type
        .parse::<CertificateType>()
        .map(CertificateType::key_type)
        .unwrap_or_default();
    let status = if record.revoked_at.is_some() {
        "Revoked"
    } else {
        "Active"
    };
    let href = format!("{}/certificates/{}", owner.base, record.id);
    layout(
        &format!("Certificate {key_type}"),
        Some(csrf),
        &owner.breadcrumbs(),
        html! {
            dl.facts {
                dt { "kid" } dd { (copyable("kid", &record.key_id)) }
                dt { "Key type" } dd { (key_type) }
                dt { "CertificateId" } dd { code { (record.id) } }
                dt { "Serial" } dd { code { (record.serial_hex) } }
                dt { "Not before" } dd { (crate::rfc3339(record.not_before)) }
                dt { "Not after" } dd { (crate::rfc3339(record.not_after)) }
                dt { "x5t#S256" } dd { code { (record.thumbprint) } }
                dt { "Status" } dd {
                    span class={"status-" (status)} { (status) }
                    @if let Some(at) = record.revoked_at { " since " (crate::rfc3339(at)) }
                }
            }
            p.actions {
                a.button href={(href) "/pem"} download { "Download the PEM chain" }
                @if record.revoked_at.is_none() {
                    a.button.secondary href={(href) "/revoke"} { "Revoke" }
                }
            }
            h2 { "PEM chain (the certificate, then its issuing CA)" }
            pre #pem { (record.chain_pem) }
        },
    )
}

/// The confirmation before a revocation.
pub(crate) fn revoke(
    csrf: &str,
    owner: &OwnerPage<'_>,
    record: &CertificateRecord,
    refusal: &Refusal,
) -> Markup {
    let href = format!("{}/certificates/{}", owner.base, record.id);
    layout(
        "Revoke the certificate?",
        Some(csrf),
        &owner.breadcrumbs(),
        html! {
            (notice(refusal))
            p { "Certificate " code { (record.key_id) } " (serial " code { (record.serial_hex) } ")." }
            p.notice { "Revoking is final. Its key moves to the inactive JWKS and the CRL; every access token bound to it, and every client assertion it signs, is refused from now on, at every instance." }
            form method="post" action={(href) "/revoke"} {
                input type="hidden" name="csrf" value=(csrf);
                p.actions {
                    button.danger type="submit" { "Revoke the certificate" }
                    a href=(href) { "Cancel" }
                }
            }
        },
    )
}

/// A page that says what went wrong (an unknown organisation, a refused action) and where to go.
pub(crate) fn problem(csrf: Option<&str>, title: &str, reason: &str) -> Markup {
    layout(
        title,
        csrf,
        &[],
        html! {
            p.notice.bad role="alert" { (reason) }
            p { a href="/console/organisations" { "Back to the organisations" } }
        },
    )
}
