//! `certbound demo`: the whole stack in-process on free ports in a temporary directory, the
//! seed's onboarding, and a tour of the Cards API, each step printed. Nothing is left behind.

// `serde_json::Value["key"]` answers `Null` for a missing key or a non-object; it never panics.
#![allow(clippy::indexing_slicing)]

use std::net::SocketAddr;

use certbound_client::{ClientError, OnboardOptions, Session, onboard};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client_commands::Terminal;

fn show(label: &str, response: &certbound_client::Response) -> Result<Value, ClientError> {
    println!("  {label:<34} HTTP {}", response.status);
    if response.status >= 400 {
        return Err(ClientError::Invalid(format!(
            "{label} failed: {}",
            response.text
        )));
    }
    Ok(response.json.clone())
}

/// The money journey: a load, a purchase through the sandbox's network authorised and cleared,
/// the balance and the transaction list.
async fn money(session: &mut Session, token: &str) -> Result<(), ClientError> {
    println!("\nThe money journey (the ledger and the sandbox's card network):");
    let balance_line = |balance: &Value| {
        format!(
            "    balance {} {}, pending {}, available {}",
            balance["cardBalance"],
            balance["currencyCode"].as_str().unwrap_or_default(),
            balance["pendingAmount"],
            balance["availableBalance"]
        )
    };
    let loaded = show(
        "POST .../transactions Load 100.00",
        &session
            .call(
                Method::POST,
                &format!("/cards/{token}/transactions"),
                Some(
                    &json!({"transactionType": "Load", "amount": "100.00", "currencyCode": "GBP"}),
                ),
            )
            .await?,
    )?;
    println!("{}", balance_line(&loaded["balance"]));
    let authorised = show(
        "POST /sandbox/.../authorisations 20",
        &session
            .call(
                Method::POST,
                &format!("/sandbox/cards/{token}/authorisations"),
                Some(&json!({"amount": "20.00", "currencyCode": "GBP", "merchant": {"name": "Corner Shop", "mcc": "5411", "country": "GBR"}})),
            )
            .await?,
    )?;
    println!(
        "    response {} ({}), auth code {}",
        authorised["responseCode"].as_str().unwrap_or_default(),
        authorised["responseDescription"]
            .as_str()
            .unwrap_or_default(),
        authorised["authCode"].as_str().unwrap_or_default()
    );
    println!("{}", balance_line(&authorised["balance"]));
    let id = authorised["authorisationId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let cleared = show(
        "POST /sandbox/.../clear",
        &session
            .call(
                Method::POST,
                &format!("/sandbox/cards/{token}/authorisations/{id}/clear"),
                None,
            )
            .await?,
    )?;
    println!("{}", balance_line(&cleared["balance"]));
    let balance = show(
        "GET /cards/{publicToken}/balance",
        &session
            .call(Method::GET, &format!("/cards/{token}/balance"), None)
            .await?,
    )?;
    println!("{}", balance_line(&balance));
    if balance["cardBalance"] != json!(80.0) {
        return Err(ClientError::Invalid(format!(
            "the balance is {} after loading 100 and spending 20",
            balance["cardBalance"]
        )));
    }
    let lines = show(
        "GET /cards/{publicToken}/transactions",
        &session
            .call(Method::GET, &format!("/cards/{token}/transactions"), None)
            .await?,
    )?;
    for line in lines.as_array().into_iter().flatten() {
        println!(
            "    {} {} {:>8} -> balance {}, available {}  {}",
            line["type"]["code"].as_str().unwrap_or_default(),
            line["status"]["code"].as_str().unwrap_or_default(),
            line["amount"]["billingValue"],
            line["amount"]["actualBalance"],
            line["amount"]["availableBalance"],
            line["description"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// The webhooks the money journey sent to the receiver: each one's signature checked.
async fn events(receiver: &crate::receiver::Receiver) -> Result<(), ClientError> {
    println!(
        "\nEvents to the programme manager (webhooks, signed with RFC 9421 HTTP Message Signatures):"
    );
    let mut deliveries = Vec::new();
    for _ in 0..100 {
        deliveries = receiver.deliveries();
        if deliveries
            .iter()
            .filter(|delivery| delivery.event_code == "112")
            .count()
            >= 3
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for delivery in &deliveries {
        let what = match delivery.event_code.as_str() {
            "112" => format!(
                "transaction {} {}, available {}",
                delivery.payload["transactionType"]["code"]
                    .as_str()
                    .unwrap_or_default(),
                delivery.payload["amount"],
                delivery.payload["availableBalance"]
            ),
            "103" => format!(
                "status {} -> {}",
                delivery.payload["oldCardStatus"]
                    .as_str()
                    .unwrap_or_default(),
                delivery.payload["newCardStatus"]
                    .as_str()
                    .unwrap_or_default()
            ),
            other => format!("event {other}"),
        };
        match &delivery.verified {
            Ok(()) => println!(
                "  event {:<4} {what:<44} signature and digest verified",
                delivery.event_code
            ),
            Err(error) => {
                return Err(ClientError::Invalid(format!(
                    "a webhook did not verify: {error}"
                )));
            }
        }
    }
    if deliveries
        .iter()
        .filter(|delivery| delivery.event_code == "112")
        .count()
        < 3
    {
        return Err(ClientError::Invalid(
            "the money journey's webhooks did not all arrive".into(),
        ));
    }
    Ok(())
}

pub(crate) async fn run() -> Result<(), String> {
    let dir = tempfile::tempdir()
        .map_err(|error| format!("cannot make a temporary directory: {error}"))?;
    let mut config = certbound_server::StackConfig {
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    config.listen.directory = any;
    config.listen.directory_mtls = any;
    config.listen.authz = any;
    config.listen.cards = any;
    config.ops.listen = any;
    config.shutdown_grace_seconds = 2;
    // The programme manager's webhook receiver, on a CA of its own that the stack trusts.
    let receiver = crate::receiver::Receiver::start().await?;
    let ca_file = dir.path().join("receiver-ca.pem");
    std::fs::write(&ca_file, &receiver.ca_pem)
        .map_err(|error| format!("cannot write {}: {error}", ca_file.display()))?;
    config.webhooks.ca_file = Some(ca_file);
    println!("Starting the whole stack in {}", dir.path().display());
    let stack = certbound_server::start(config)
        .await
        .map_err(|error| error.to_string())?;
    let urls = (
        stack.directory_url.clone(),
        stack.authz_url.clone(),
        stack.cards_url.clone(),
    );
    let (Some(directory), Some(authz), Some(cards)) = urls else {
        return Err("the demo needs every part running".into());
    };
    println!("  directory {directory}\n  authz     {authz}\n  cards     {cards}\n");
    let result = tour(&stack, directory, authz, cards, dir.path(), &receiver).await;
    stack.shutdown().await;
    drop(dir);
    match result {
        Ok(()) => {
            println!("\nThe demo is done; its temporary directory is gone.");
            Ok(())
        }
        Err(error) => Err(error.to_string()),
    }
}

async fn tour(
    stack: &certbound_server::RunningStack,
    directory: String,
    authz: String,
    cards: String,
    dir: &std::path::Path,
    receiver: &crate::receiver::Receiver,
) -> Result<(), ClientError> {
    println!("Onboarding, as the seed does it by hand:");
    let options = OnboardOptions {
        directory,
        authz,
        cards,
        admin_token: stack.admin_token.clone(),
        ca_pem: Some(stack.ca_pem.clone()),
        organisation_name: "Demo Fintech Ltd".into(),
        country: "GB".into(),
        client_name: "Demo Card Programme".into(),
        roles: vec!["programme-manager".into()],
        out: dir.join("client"),
        webhook: Some(receiver.url.clone()),
    };
    onboard(&options, &Terminal).await?;
    let mut session = Session::open(&options.out)?;
    // The receiver checks every delivery against the key the Cards API publishes.
    receiver.trust(session.call(Method::GET, "/keys", None).await?.json);

    println!("\nA tour of the Cards API (mTLS + certificate-bound token on every call):");
    let card = json!({
        "cardType": "Virtual", "cardProduct": "10001", "customerReference": "demo-0001",
        "cardHolder": {"title": "Ms", "firstName": "Ada", "lastName": "Lovelace", "dateOfBirth": "1990-12-10"},
        "address": {"addressLine1": "1 High Street", "city": "London", "postCode": "EC1A 1BB", "country": "GBR"},
    });
    let created = show(
        "POST /cards",
        &session.call(Method::POST, "/cards", Some(&card)).await?,
    )?;
    let token = created["publicToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!(
        "    publicToken {token}, maskedPan {}",
        created["maskedPan"].as_str().unwrap_or_default()
    );
    let shown = show(
        "GET /cards/{publicToken}",
        &session
            .call(Method::GET, &format!("/cards/{token}"), None)
            .await?,
    )?;
    println!(
        "    status {} ({})",
        shown["status"].as_str().unwrap_or_default(),
        shown["cardStatusCode"].as_str().unwrap_or_default()
    );
    show(
        "POST /cards/{publicToken}/pin",
        &session
            .call(
                Method::POST,
                &format!("/cards/{token}/pin"),
                Some(&json!({"pin": "2468"})),
            )
            .await?,
    )?;
    let pin = show(
        "GET /cards/{publicToken}/pin",
        &session
            .call(Method::GET, &format!("/cards/{token}/pin"), None)
            .await?,
    )?;
    println!("    pin {}", pin["pin"].as_str().unwrap_or_default());
    let cvv = show(
        "GET /cards/{publicToken}/cvv",
        &session
            .call(Method::GET, &format!("/cards/{token}/cvv"), None)
            .await?,
    )?;
    println!("    cvv {}", cvv["cvv"].as_str().unwrap_or_default());
    let blocked = show(
        "PUT /cards/{publicToken}/status 05",
        &session
            .call(
                Method::PUT,
                &format!("/cards/{token}/status"),
                Some(&json!({"cardStatusCode": "05"})),
            )
            .await?,
    )?;
    println!(
        "    status {}",
        blocked["status"].as_str().unwrap_or_default()
    );
    show(
        "PUT /cards/{publicToken}/status 00",
        &session
            .call(
                Method::PUT,
                &format!("/cards/{token}/status"),
                Some(&json!({"cardStatusCode": "00"})),
            )
            .await?,
    )?;
    let keys = show(
        "GET /keys",
        &session.call(Method::GET, "/keys", None).await?,
    )?;
    println!(
        "    {} keys (encryption RSA-OAEP-256, signing PS256)",
        keys["keys"].as_array().map(Vec::len).unwrap_or(0)
    );
    let bulk = show(
        "POST /cards/bulk (3 cards)",
        &session
            .call(
                Method::POST,
                "/cards/bulk",
                Some(&json!({"cardProduct": "10002", "cardType": "Virtual", "quantity": 3})),
            )
            .await?,
    )?;
    let id = bulk["id"].as_str().unwrap_or_default().to_owned();
    let mut job = Value::Null;
    for _ in 0..100 {
        job = session
            .call(
                Method::GET,
                &format!("/cards/bulk?bulkCardRequestId={id}"),
                None,
            )
            .await?
            .json;
        if job["status"] == "Complete" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    println!(
        "  {:<34} {}",
        "GET /cards/bulk",
        job["status"].as_str().unwrap_or_default()
    );
    if job["status"] != "Complete" {
        return Err(ClientError::Invalid(
            "the bulk request did not complete".into(),
        ));
    }
    money(&mut session, &token).await?;
    events(receiver).await?;
    println!();
    let lost = show(
        "PUT /cards/{publicToken}/status 41",
        &session
            .call(
                Method::PUT,
                &format!("/cards/{token}/status"),
                Some(&json!({"status": "Lost"})),
            )
            .await?,
    )?;
    println!(
        "    status {} (terminal)",
        lost["status"].as_str().unwrap_or_default()
    );
    let refused = session
        .call(
            Method::PUT,
            &format!("/cards/{token}/status"),
            Some(&json!({"status": "Active"})),
        )
        .await?;
    println!(
        "  {:<34} HTTP {} (a lost card never comes back)",
        "PUT /cards/{publicToken}/status 00", refused.status
    );
    if refused.status != 409 {
        return Err(ClientError::Invalid("a lost card was reactivated".into()));
    }
    Ok(())
}
