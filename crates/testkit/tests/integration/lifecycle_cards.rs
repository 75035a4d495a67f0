//! A card's life after issue (DESIGN.md section 11, issue 18 item 3): replacement with and
//! without its balance, renewal, conversion from virtual to physical, and what each refuses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use certbound_testkit::{CardsClient, TestStack, all_at_once, card_body};
use reqwest::Method;
use serde_json::{Value, json};

async fn call(
    client: &CardsClient<'_>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, body, _) = client.call(method, path, body).await;
    (status, body)
}

async fn card(client: &CardsClient<'_>, body: Value) -> String {
    let (status, created) = call(client, Method::POST, "/cards", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    created["publicToken"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_replacement_takes_the_holder_and_the_balance_and_stops_the_old_card() {
    let stack = TestStack::start().await;
    let (client, _) = stack.cards_client(&["programme-manager"]).await;
    let old = card(&client, card_body("replace-me")).await;
    call(
        &client,
        Method::POST,
        &format!("/cards/{old}/transactions"),
        Some(json!({"transactionType": "Load", "amount": 60, "currencyCode": "GBP"})),
    )
    .await;
    let (_, hold) = call(
        &client,
        Method::POST,
        &format!("/sandbox/cards/{old}/authorisations"),
        Some(json!({"amount": 10, "currencyCode": "GBP"})),
    )
    .await;
    assert_eq!(hold["responseCode"], "00");

    let key = uuid::Uuid::new_v4().to_string();
    let body = json!({"moveBalance": true, "moveExpiryDate": true}).to_string();
    let path = format!("/cards/{old}/replace");
    let (status, replaced, _) = client
        .raw(
            Method::POST,
            &path,
            Some(body.clone()),
            &[("IdempotencyKey", &key)],
        )
        .await;
    assert_eq!(status, 200, "{replaced}");
    let new = replaced["publicToken"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(replaced["customerReference"], "replace-me");
    // The same key again: the same new card, nothing done twice.
    let (status, again, _) = client
        .raw(Method::POST, &path, Some(body), &[("IdempotencyKey", &key)])
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["publicToken"], new.as_str());

    let (_, old_card) = call(&client, Method::GET, &format!("/cards/{old}"), None).await;
    let (_, new_card) = call(&client, Method::GET, &format!("/cards/{new}"), None).await;
    assert_eq!(old_card["cardStatusCode"], "05", "the old card is blocked");
    assert_eq!(new_card["cardStatusCode"], "00");
    assert_eq!(
        new_card["cardDetails"]["cardHolder"],
        old_card["cardDetails"]["cardHolder"]
    );
    assert_eq!(
        new_card["cardDetails"]["expiryDate"],
        old_card["cardDetails"]["expiryDate"]
    );
    assert_ne!(new_card["cardDetails"]["maskedPan"], Value::Null);
    // The available 50 moved; the hold of 10 stays with the old card and settles there.
    assert_eq!(new_card["balance"]["cardBalance"], 50.0);
    assert_eq!(old_card["balance"]["cardBalance"], 10.0);
    assert_eq!(old_card["balance"]["availableBalance"], 0.0);
    let id = hold["authorisationId"].as_str().unwrap();
    let (status, cleared) = call(
        &client,
        Method::POST,
        &format!("/sandbox/cards/{old}/authorisations/{id}/clear"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["balance"]["cardBalance"], 0.0);
    let (_, lines) = call(
        &client,
        Method::GET,
        &format!("/cards/{new}/transactions"),
        None,
    )
    .await;
    assert_eq!(lines[0]["type"]["code"], "L");
    assert!(lines[0]["description"].as_str().unwrap().contains(&old));
    assert_eq!(lines.as_array().unwrap().len(), 1, "the balance moved once");

    // The old card: no purchase (05), never active again, not replaced twice.
    let (_, declined) = call(
        &client,
        Method::POST,
        &format!("/sandbox/cards/{old}/authorisations"),
        Some(json!({"amount": 1, "currencyCode": "GBP"})),
    )
    .await;
    assert_eq!(declined["responseCode"], "05");
    let (status, refused) = call(
        &client,
        Method::PUT,
        &format!("/cards/{old}/status"),
        Some(json!({"cardStatusCode": "00"})),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused
            .to_string()
            .contains(&format!("replaced by card {new}")),
        "{refused}"
    );
    let (status, refused) = call(
        &client,
        Method::POST,
        &format!("/cards/{old}/replace"),
        None,
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    // Nor does it take money any more (it still pays out).
    let (status, refused) = call(
        &client,
        Method::POST,
        &format!("/cards/{old}/transactions"),
        Some(json!({"transactionType": "Load", "amount": 1, "currencyCode": "GBP"})),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused
            .to_string()
            .contains(&format!("replaced by card {new}")),
        "{refused}"
    );

    // A lost card stays lost; an expiry month may be chosen; a closed card is not replaced.
    let lost = card(&client, card_body("lost")).await;
    call(
        &client,
        Method::PUT,
        &format!("/cards/{lost}/status"),
        Some(json!({"cardStatusCode": "41"})),
    )
    .await;
    let (status, replacement) = call(
        &client,
        Method::POST,
        &format!("/cards/{lost}/replace"),
        Some(json!({"expiryDate": "2031-05"})),
    )
    .await;
    assert_eq!(status, 200, "{replacement}");
    assert_eq!(replacement["expiryDate"], "2031-05-31");
    let (_, lost_card) = call(&client, Method::GET, &format!("/cards/{lost}"), None).await;
    assert_eq!(lost_card["cardStatusCode"], "41");
    let (status, body) = call(
        &client,
        Method::POST,
        &format!("/cards/{lost}/replace"),
        Some(json!({"expiryDate": "2020-01"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"]["expiryDate"].is_array());
    let closed = card(&client, card_body("closed")).await;
    call(
        &client,
        Method::PUT,
        &format!("/cards/{closed}/status"),
        Some(json!({"cardStatusCode": "46"})),
    )
    .await;
    let (status, _) = call(
        &client,
        Method::POST,
        &format!("/cards/{closed}/replace"),
        None,
    )
    .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn renewal_and_conversion() {
    let stack = TestStack::start().await;
    let (client, _) = stack.cards_client(&["programme-manager"]).await;
    let mut body = card_body("renew");
    body["expiryDate"] = json!("2031-01-31");
    let token = card(&client, body).await;
    let (_, before) = call(&client, Method::GET, &format!("/cards/{token}"), None).await;
    let (_, cvv_before) = call(&client, Method::GET, &format!("/cards/{token}/cvv"), None).await;

    // Renew: a new expiry (the default one from today) and a new CVV, the same PAN.
    let (status, _) = call(
        &client,
        Method::POST,
        &format!("/cards/{token}/renew"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, renewed) = call(&client, Method::GET, &format!("/cards/{token}"), None).await;
    assert_ne!(renewed["cardDetails"]["expiryDate"], "2031-01-31");
    assert_eq!(
        renewed["cardDetails"]["maskedPan"],
        before["cardDetails"]["maskedPan"]
    );
    // Migrate: a new PAN and CVV (both the same by chance: one in ten million).
    let (status, _) = call(
        &client,
        Method::POST,
        &format!("/cards/{token}/renew"),
        Some(json!({"renewStep": "Migrate"})),
    )
    .await;
    assert_eq!(status, 204);
    let (_, migrated) = call(&client, Method::GET, &format!("/cards/{token}"), None).await;
    let (_, cvv_after) = call(&client, Method::GET, &format!("/cards/{token}/cvv"), None).await;
    assert!(
        migrated["cardDetails"]["maskedPan"] != before["cardDetails"]["maskedPan"]
            || cvv_after["cvv"] != cvv_before["cvv"],
        "neither the PAN nor the CVV changed"
    );
    assert_eq!(
        migrated["cardDetails"]["expiryDate"],
        renewed["cardDetails"]["expiryDate"]
    );
    let (status, body) = call(
        &client,
        Method::POST,
        &format!("/cards/{token}/renew"),
        Some(json!({"renewStep": "Sometime"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // Convert: virtual to physical once, from an active card only.
    let (status, body) = call(
        &client,
        Method::PATCH,
        &format!("/cards/{token}/card-type"),
        Some(json!({"cardType": "Virtual"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, converted) = call(
        &client,
        Method::PATCH,
        &format!("/cards/{token}/card-type"),
        Some(json!({"cardType": "Physical", "newExpiryDate": "2032-02-29"})),
    )
    .await;
    assert_eq!(status, 200, "{converted}");
    assert_eq!(converted["cardType"], "Physical");
    assert_eq!(converted["expiryDate"], "2032-02-29");
    let (status, body) = call(
        &client,
        Method::POST,
        &format!("/cards/{token}/card-type"),
        Some(json!({"cardType": "Physical"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let mut inactive = card_body("inactive");
    inactive["activateNow"] = json!(false);
    let inactive = card(&client, inactive).await;
    let (status, _) = call(
        &client,
        Method::PATCH,
        &format!("/cards/{inactive}/card-type"),
        Some(json!({"cardType": "Physical"})),
    )
    .await;
    assert_eq!(status, 409);
    // Renewing a terminal card is refused.
    call(
        &client,
        Method::PUT,
        &format!("/cards/{inactive}/status"),
        Some(json!({"cardStatusCode": "83"})),
    )
    .await;
    let (status, _) = call(
        &client,
        Method::POST,
        &format!("/cards/{inactive}/renew"),
        None,
    )
    .await;
    assert_eq!(status, 409);
}

/// Ten replacements of one card at once: exactly one issues a card; the others are refused.
#[tokio::test]
async fn concurrent_replacements_issue_one_card() {
    let stack = TestStack::start().await;
    let (client, _) = stack.cards_client(&["programme-manager"]).await;
    let old = card(&client, card_body("race")).await;
    let path = format!("/cards/{old}/replace");
    let attempts: Vec<_> = (0..10)
        .map(|_| call(&client, Method::POST, &path, None))
        .collect();
    let answers = all_at_once(attempts).await;
    let issued: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(issued.len(), 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(status, _)| *status == 200 || *status == 409),
        "{answers:?}"
    );
    let new = issued[0]["publicToken"].as_str().unwrap();
    let (status, _) = call(&client, Method::GET, &format!("/cards/{new}"), None).await;
    assert_eq!(status, 200);
}
