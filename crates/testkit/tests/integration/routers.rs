//! The refusal rows of each part, sent straight to its router (`tower::ServiceExt::oneshot`) with
//! the peer certificate as a request extension, as the TLS edge would put it there: no
//! handshake, no socket. TLS itself is tested end to end elsewhere (tls_policy, limits, trust).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use certbound_http::PeerCertificate;
use certbound_testkit::{Credential, TestStack};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;
use tower::ServiceExt as _;

/// What the TLS edge records for a connection presenting `credential`.
fn peer(credential: &Credential) -> PeerCertificate {
    let leaf = CertificateDer::pem_slice_iter(credential.chain_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    PeerCertificate {
        der: leaf.as_ref().into(),
        thumbprint: credential.thumbprint.as_str().into(),
        issued_by_directory: true,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn send(
    router: &Router,
    method: Method,
    path: &str,
    peer: Option<PeerCertificate>,
    bearer: Option<&str>,
    body: Option<(&str, &str)>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some((content_type, text)) => {
            request = request.header(header::CONTENT_TYPE, content_type);
            Body::from(text.to_owned())
        }
        None => Body::empty(),
    };
    let mut request = request.body(body).unwrap();
    if let Some(peer) = peer {
        request.extensions_mut().insert(peer);
    }
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// Asserts a Cards API refusal: status, the Thredd shape with the field, the trace id of the
/// header in the body, and for 401 the RFC 6750 challenge.
fn refused(answer: &Answer, status: u16, field: &str, says: &str) {
    assert_eq!(answer.status.as_u16(), status, "{}", answer.body);
    assert_eq!(answer.body["status"], status);
    let message = answer.body["errors"][field][0].as_str().unwrap_or_default();
    assert!(message.contains(says), "`{says}` not in {}", answer.body);
    assert_eq!(
        answer.body["traceId"].as_str().unwrap(),
        answer.headers["x-trace-id"].to_str().unwrap()
    );
    if status == 401 {
        let challenge = answer.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{challenge}"
        );
    }
}

#[tokio::test]
async fn cards_api_refusals_through_its_router() {
    let stack = TestStack::start().await;
    let (reader, token) = stack.client_with_token(&["card-reader"]).await;
    let (other, _) = stack.client_with_token(&["card-reader"]).await;
    let cards = stack.stack.routers.cards.clone().unwrap();
    let card = "/api/v1/cards/123456789";
    let mine = || Some(peer(&reader.transport));

    let answer = send(&cards, Method::GET, card, mine(), None, None).await;
    refused(&answer, 401, "token", "Authorization: Bearer");
    let answer = send(&cards, Method::GET, card, None, Some(&token), None).await;
    refused(&answer, 401, "token", "present the certificate");
    let answer = send(&cards, Method::GET, card, mine(), Some("not.a.token"), None).await;
    refused(&answer, 401, "token", "not a valid token");
    let answer = send(
        &cards,
        Method::GET,
        card,
        Some(peer(&other.transport)),
        Some(&token),
        None,
    )
    .await;
    refused(&answer, 401, "token", "bound to another certificate");
    // The token is good: an unknown card is 404, a write without cards.write 403.
    let answer = send(&cards, Method::GET, card, mine(), Some(&token), None).await;
    refused(&answer, 404, "card", "");
    let answer = send(
        &cards,
        Method::POST,
        "/api/v1/cards",
        mine(),
        Some(&token),
        Some(("application/json", "{}")),
    )
    .await;
    refused(&answer, 403, "token", "cards.write");
    let challenge = answer.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert_eq!(
        challenge,
        "Bearer error=\"insufficient_scope\", scope=\"cards.write\""
    );
    // What axum refuses itself arrives in the Thredd shape too.
    let answer = send(
        &cards,
        Method::DELETE,
        "/api/v1/cards",
        mine(),
        Some(&token),
        None,
    )
    .await;
    refused(&answer, 405, "request", "Allow header");
    let answer = send(
        &cards,
        Method::GET,
        "/api/v1/cards/bulk",
        mine(),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    stack.stop().await;
}

/// Asserts an RFC 6749 §5.2 refusal with its trace id.
fn oauth_refused(answer: &Answer, status: u16, error: &str, says: &str) {
    assert_eq!(answer.status.as_u16(), status, "{}", answer.body);
    assert_eq!(answer.body["error"], error, "{}", answer.body);
    let description = answer.body["error_description"].as_str().unwrap();
    assert!(description.contains(says), "`{says}` not in {description}");
    assert!(!description.contains(['\r', '\n', '\t']));
    assert_eq!(
        answer.body["trace_id"].as_str().unwrap(),
        answer.headers["x-trace-id"].to_str().unwrap()
    );
}

#[tokio::test]
async fn directory_and_authorization_server_refusals_through_their_routers() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    let public = stack.stack.routers.directory.clone().unwrap();
    let mtls = stack.stack.routers.directory_mtls.clone().unwrap();
    let authz = stack.stack.routers.authz.clone().unwrap();
    let json = Some(("application/json", r#"{"OrganisationName":"X"}"#));

    let answer = send(&public, Method::POST, "/organisations", None, None, json).await;
    oauth_refused(&answer, 401, "unauthorized", "Authorization: Bearer");
    let answer = send(
        &public,
        Method::POST,
        "/organisations",
        None,
        Some("wrong"),
        json,
    )
    .await;
    oauth_refused(&answer, 401, "unauthorized", "admin token is wrong");
    let answer = send(&public, Method::GET, "/nowhere", None, None, None).await;
    oauth_refused(&answer, 404, "not_found", "no such endpoint");

    let form = Some((
        "application/x-www-form-urlencoded",
        "grant_type=client_credentials&scope=directory%3Asoftware",
    ));
    let answer = send(&mtls, Method::POST, "/token", None, None, form).await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(answer.body["error"], "invalid_client");
    let answer = send(
        &mtls,
        Method::POST,
        "/token",
        Some(peer(&software.transport)),
        None,
        Some((
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials",
        )),
    )
    .await;
    oauth_refused(&answer, 401, "invalid_client", "client_assertion");
    // A signing certificate never gets this far over TLS; as an extension it is still refused.
    let answer = send(
        &mtls,
        Method::POST,
        "/token",
        Some(peer(&software.signing)),
        None,
        form,
    )
    .await;
    oauth_refused(&answer, 401, "invalid_client", "key role");

    let answer = send(&authz, Method::POST, "/oauth2/token", None, None, form).await;
    oauth_refused(&answer, 401, "invalid_client", "no client certificate");
    let answer = send(
        &authz,
        Method::POST,
        "/oauth2/token",
        Some(peer(&software.transport)),
        None,
        Some((
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials",
        )),
    )
    .await;
    oauth_refused(&answer, 401, "invalid_client", "authenticate the client");
    let answer = send(
        &authz,
        Method::POST,
        "/oauth2/token",
        Some(peer(&software.transport)),
        None,
        Some(("application/json", "{}")),
    )
    .await;
    oauth_refused(&answer, 400, "invalid_request", "x-www-form-urlencoded");
    stack.stop().await;
}
