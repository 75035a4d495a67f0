//! The directory console (DESIGN.md section 10) through the real public listener, as a browser
//! without JavaScript uses it: sign-in with the admin token, the session cookie, CSRF tokens on
//! every form, the response headers, and the API's own rules and refusal reasons on every page.
//! (The journey in a real browser, with axe-core, is `.ci/console.sh`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::collections::HashMap;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use certbound_testkit::{TestStack, csr_pem, software_statement_body};

/// A cookie-keeping client that does not follow redirects.
struct Browser<'s> {
    stack: &'s TestStack,
    client: reqwest::Client,
    cookies: HashMap<String, String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    /// The CSRF token the page's first form carries.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a form with a csrf field") + marker.len();
        let end = start + self.body[start..].find('"').unwrap();
        self.body[start..end].to_owned()
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    }
}

impl<'s> Browser<'s> {
    fn new(stack: &'s TestStack) -> Self {
        let ca = reqwest::Certificate::from_pem(stack.stack.ca_pem.as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            stack,
            client,
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let response = request
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for cookie in headers.get_all(SET_COOKIE) {
            let cookie = cookie.to_str().unwrap();
            let (pair, attributes) = cookie.split_once(';').unwrap_or((cookie, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = response.text().await.unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(self.stack.public(path));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let request = self.client.post(self.stack.public(path)).form(fields);
        self.send(request).await
    }

    /// A `multipart/form-data` post, as the certificate form sends it.
    async fn post_multipart(&mut self, path: &str, fields: &[(&str, &str)], file: &[u8]) -> Page {
        let boundary = "certbound-test-boundary-7d1c";
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"CsrFile\"; filename=\"upload.csr\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let request = self
            .client
            .post(self.stack.public(path))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        self.send(request).await
    }

    async fn sign_in(&mut self) -> Page {
        let form = self.get("/console/sign-in").await;
        assert_eq!(form.status, StatusCode::OK);
        let token = self.stack.stack.admin_token.clone();
        self.post(
            "/console/sign-in",
            &[("csrf", &form.csrf()), ("AdminToken", &token)],
        )
        .await
    }
}

fn assert_cookie_is_locked_down(cookie: &str) {
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/;",
        "Max-Age=",
    ] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    // __Host-: no other site or path can set a cookie of that name to shadow it.
    assert!(cookie.starts_with("__Host-"), "{cookie}");
    assert!(!cookie.contains("Domain="), "{cookie}");
}

/// The API's `error_description` for the same request, to compare with the console's words.
async fn api_refusal(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 400);
    response.json::<Value>().await.unwrap()["error_description"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// HTML escapes what maud escapes, to find the API's words in a page.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[tokio::test]
async fn sign_in_takes_the_admin_token_and_sign_out_ends_the_session_on_the_server() {
    let stack = TestStack::start().await;
    let mut browser = Browser::new(&stack);

    let away = browser.get("/console/organisations").await;
    assert_eq!(away.status, StatusCode::SEE_OTHER);
    assert_eq!(away.location(), "/console/sign-in");

    let form = browser.get("/console/sign-in").await;
    assert_eq!(form.status, StatusCode::OK);
    let csp = form.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(form.headers["x-content-type-options"], "nosniff");
    assert_eq!(form.headers["cache-control"], "no-store");
    assert_cookie_is_locked_down(&form.set_cookies()[0]);

    // A wrong admin token: refused, the reason next to the field.
    let wrong = browser
        .post(
            "/console/sign-in",
            &[("csrf", &form.csrf()), ("AdminToken", "not-the-token")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body.contains("id=\"AdminToken-error\""),
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains("The admin token is wrong"));
    // Recorded in the audit trail as the admin API's refusals are: address, path, reason.
    let trail = stack.audit_trail();
    assert!(
        trail.lines().any(|line| line.contains("\"refused\"")
            && line.contains("/console/sign-in")
            && line.contains("unauthorized")),
        "{trail}"
    );
    assert!(!browser.cookies.contains_key("__Host-certbound_console"));

    // The right token without the form's CSRF token: refused.
    let token = stack.stack.admin_token.clone();
    let forged = browser
        .post("/console/sign-in", &[("AdminToken", &token)])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(!browser.cookies.contains_key("__Host-certbound_console"));

    let signed_in = browser.sign_in().await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.location(), "/console/organisations");
    let session = signed_in
        .set_cookies()
        .into_iter()
        .find(|cookie| cookie.starts_with("__Host-certbound_console="))
        .unwrap();
    assert_cookie_is_locked_down(&session);
    let kept = browser.cookies["__Host-certbound_console"].clone();

    let list = browser.get("/console/organisations").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("New organisation"));
    assert!(
        list.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    // Sign-out needs the session's CSRF token, then the session is gone on the server: the
    // same cookie sent again is not signed in.
    let refused = browser.post("/console/sign-out", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let out = browser
        .post("/console/sign-out", &[("csrf", &list.csrf())])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    browser
        .cookies
        .insert("__Host-certbound_console".to_owned(), kept);
    let after = browser.get("/console/organisations").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location(), "/console/sign-in");
}

#[tokio::test]
async fn every_form_needs_its_csrf_token_and_refusals_are_the_apis_next_to_their_field() {
    let stack = TestStack::start().await;
    let mut browser = Browser::new(&stack);
    browser.sign_in().await;
    let list = browser.get("/console/organisations").await;
    let csrf = list.csrf();
    let count = || async {
        stack
            .admin(reqwest::Method::GET, "/organisations")
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap()
            .len()
    };
    let before = count().await;

    // Without the token, or with another: refused, nothing made.
    for fields in [
        vec![("OrganisationName", "Forged Ltd")],
        vec![("csrf", "made-up"), ("OrganisationName", "Forged Ltd")],
    ] {
        let forged = browser.post("/console/organisations", &fields).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{fields:?}");
        assert!(forged.body.contains("CSRF token"));
    }
    assert_eq!(count().await, before);

    // The API's rule and words, next to the field.
    let api = api_refusal(
        stack
            .admin(reqwest::Method::POST, "/organisations")
            .json(&json!({"OrganisationName": "Test Company 1", "Country": "GBR"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let refused = browser
        .post(
            "/console/organisations",
            &[
                ("csrf", &csrf),
                ("OrganisationName", "Test Company 1"),
                ("Country", "GBR"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("id=\"Country-error\""),
        "{}",
        refused.body
    );
    assert!(refused.body.contains(&escaped(&api)), "{api}");
    assert!(
        refused.body.contains("value=\"Test Company 1\""),
        "the form keeps what was sent"
    );
    assert_eq!(count().await, before);

    let created = browser
        .post(
            "/console/organisations",
            &[
                ("csrf", &csrf),
                ("OrganisationName", "Console Co"),
                ("Country", "gb"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER);
    let organisation_id = created
        .location()
        .strip_prefix("/console/organisations/")
        .unwrap()
        .to_owned();
    let shown = stack
        .admin(
            reqwest::Method::GET,
            &format!("/organisations/{organisation_id}"),
        )
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(shown["OrganisationName"], "Console Co");
    assert_eq!(shown["Country"], "GB");

    // The application wizard: a logo that is not an image is the API's refusal, by LogoUri.
    let mut bad_logo = software_statement_body(&["programme-manager"]);
    bad_logo["LogoUri"] = json!("https://example.com/logo");
    let api = api_refusal(
        stack
            .admin(
                reqwest::Method::POST,
                &format!("/organisations/{organisation_id}/softwarestatements"),
            )
            .json(&bad_logo)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let base = format!("/console/organisations/{organisation_id}");
    let wizard = browser.get(&format!("{base}/applications/new")).await;
    assert_eq!(wizard.status, StatusCode::OK);
    assert!(
        wizard.body.contains("cards.read cards.write pin.read"),
        "roles show their scopes"
    );
    let application = |logo: &'static str, roles: &'static [&'static str]| {
        let mut fields = vec![
            ("csrf", wizard.csrf()),
            ("ClientName", "Console App".to_owned()),
            ("Version", "1.0".to_owned()),
            ("HomepageUri", "https://example.com".to_owned()),
            ("LogoUri", logo.to_owned()),
            (
                "RedirectUri",
                "https://example.com/callback\r\nhttps://example.com/other".to_owned(),
            ),
        ];
        fields.extend(roles.iter().map(|role| ("Roles", (*role).to_owned())));
        fields
    };
    let fields = application("https://example.com/logo", &["programme-manager"]);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = browser.post(&format!("{base}/applications"), &fields).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("id=\"LogoUri-error\""),
        "{}",
        refused.body
    );
    assert!(refused.body.contains(&escaped(&api)), "{api}");

    let fields = application("https://example.com/logo.png", &[]);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = browser.post(&format!("{base}/applications"), &fields).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("id=\"Roles-error\""),
        "{}",
        refused.body
    );

    let fields = application("https://example.com/logo.png", &["programme-manager", "ws"]);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let made = browser.post(&format!("{base}/applications"), &fields).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let statement_id = made.location().rsplit('/').next().unwrap().to_owned();
    let statement = stack
        .admin(
            reqwest::Method::GET,
            &format!("/organisations/{organisation_id}/softwarestatements/{statement_id}"),
        )
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(statement["Roles"], json!(["programme-manager", "ws"]));
    assert_eq!(
        statement["RedirectUri"],
        json!(["https://example.com/callback", "https://example.com/other"])
    );
    let page = browser.get(made.location()).await;
    for (id, value) in [
        ("org_id", organisation_id.as_str()),
        ("ssa_id", statement_id.as_str()),
        ("client_id", statement["ClientId"].as_str().unwrap()),
    ] {
        assert!(
            page.body.contains(&format!("id=\"{id}\">{value}</code>")),
            "{id} not shown ready to copy"
        );
    }

    // Somebody else's organisation id in the path: a 404 page, not an error.
    let missing = browser
        .get("/console/organisations/00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("does not exist"));
}

#[tokio::test]
async fn certificates_are_issued_downloaded_and_revoked_by_the_apis_rules() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    let (other_statement, _) = stack
        .software_statement(&software.organisation_id, &["card-reader"])
        .await;
    let mut browser = Browser::new(&stack);
    browser.sign_in().await;
    let base = format!(
        "/console/organisations/{}/softwarestatements/{}",
        software.organisation_id, software.software_statement_id
    );
    let form = browser
        .get(&format!("{base}/certificates/new/transport"))
        .await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("openssl req -new -newkey rsa:2048"));
    assert!(
        form.body
            .contains(&format!("CN={}", software.software_statement_id))
    );
    let csrf = form.csrf();

    // A CSR for another software: the API's refusal, shown by the CSR field.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let foreign = csr_pem(&key, &software.organisation_id, &other_statement);
    let api = api_refusal(
        stack
            .admin(
                reqwest::Method::POST,
                &format!(
                    "/organisations/{}/softwarestatements/{}/certificates/transport",
                    software.organisation_id, software.software_statement_id
                ),
            )
            .header("content-type", "application/pkcs10")
            .body(foreign.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    let refused = browser
        .post_multipart(
            &format!("{base}/certificates/new/transport"),
            &[("csrf", &csrf)],
            foreign.as_bytes(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("id=\"Csr-error\""),
        "{}",
        refused.body
    );
    assert!(refused.body.contains(&escaped(&api)), "{api}");

    // Without the CSRF token: refused, nothing issued.
    let own = csr_pem(
        &key,
        &software.organisation_id,
        &software.software_statement_id,
    );
    let forged = browser
        .post_multipart(
            &format!("{base}/certificates/new/transport"),
            &[],
            own.as_bytes(),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // Pasted instead of uploaded: issued, shown, downloadable.
    let issued = browser
        .post_multipart(
            &format!("{base}/certificates/new/transport"),
            &[("csrf", &csrf), ("Csr", &own)],
            b"",
        )
        .await;
    assert_eq!(issued.status, StatusCode::SEE_OTHER, "{}", issued.body);
    let certificate_page = issued.location().to_owned();
    let certificate_id = certificate_page.rsplit('/').next().unwrap().to_owned();
    let listed = stack
        .admin(
            reqwest::Method::GET,
            &format!(
                "/organisations/{}/softwarestatements/{}/certificates",
                software.organisation_id, software.software_statement_id
            ),
        )
        .send()
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap();
    assert_eq!(listed.len(), 3, "the onboarded two and this one");
    let record = listed
        .iter()
        .find(|record| record["CertificateId"] == certificate_id.as_str())
        .unwrap();
    let shown = browser.get(&certificate_page).await;
    assert!(shown.body.contains(record["KeyId"].as_str().unwrap()));
    assert!(
        shown
            .body
            .contains(record["SerialNumber"].as_str().unwrap())
    );
    let pem = browser.get(&format!("{certificate_page}/pem")).await;
    assert_eq!(pem.status, StatusCode::OK);
    assert!(
        pem.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=")
    );
    assert_eq!(pem.body, record["Certificate"].as_str().unwrap());

    // Revocation: confirmation first; the POST needs its CSRF token; then it is the API's.
    let confirm = browser.get(&format!("{certificate_page}/revoke")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    let forged = browser
        .post(&format!("{certificate_page}/revoke"), &[])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let revoked = browser
        .post(
            &format!("{certificate_page}/revoke"),
            &[("csrf", &confirm.csrf())],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let listed = stack
        .admin(
            reqwest::Method::GET,
            &format!(
                "/organisations/{}/softwarestatements/{}/certificates",
                software.organisation_id, software.software_statement_id
            ),
        )
        .send()
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap();
    let record = listed
        .iter()
        .find(|record| record["CertificateId"] == certificate_id.as_str())
        .unwrap();
    assert_eq!(record["Status"], "Revoked");
    let again = browser
        .post(
            &format!("{certificate_page}/revoke"),
            &[("csrf", &confirm.csrf())],
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("already revoked"));

    // The organisation page lists the trail's events of this organisation.
    let organisation = browser
        .get(&format!(
            "/console/organisations/{}",
            software.organisation_id
        ))
        .await;
    assert!(
        organisation.body.contains("certificate_revoked"),
        "{}",
        organisation.body
    );
    assert!(organisation.body.contains("certificate_issued"));
}
