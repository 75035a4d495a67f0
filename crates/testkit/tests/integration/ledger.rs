//! The Cards API's ledger from outside (DESIGN.md section 11, issue 18): loads, unloads, fees,
//! adjustments and transfers with exact money; the balance everywhere it is shown; the
//! transaction list with Thredd's codes and running balances; every refusal with its status and
//! field; `IdempotencyKey` replays; and concurrent debits at two instances that can never
//! overdraw. Runs on SQLite and, in CI, on PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use certbound_testkit::{CardsClient, TestStack, all_at_once, card_body};
use reqwest::Method;
use serde_json::{Value, json};

const ROLES: &[&str] = &["programme-manager"];

async fn new_card(client: &CardsClient<'_>) -> String {
    let (status, body, _) = client
        .call(Method::POST, "/cards", Some(card_body("ledger")))
        .await;
    assert_eq!(status, 201, "{body}");
    body["publicToken"].as_str().unwrap().to_owned()
}

async fn post(client: &CardsClient<'_>, card: &str, body: Value) -> (u16, Value) {
    let (status, body, _) = client
        .call(
            Method::POST,
            &format!("/cards/{card}/transactions"),
            Some(body),
        )
        .await;
    (status, body)
}

async fn balance(client: &CardsClient<'_>, card: &str) -> Value {
    let (status, body, _) = client
        .call(Method::GET, &format!("/cards/{card}/balance"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn refused(status: u16, body: &Value, expected: u16, field: &str, words: &str) {
    assert_eq!(status, expected, "{body}");
    let messages = body["errors"][field].to_string();
    assert!(
        messages.contains(words),
        "`{field}` should say `{words}`: {body}"
    );
}

#[tokio::test]
async fn money_moves_exactly_and_every_line_shows_its_running_balance() {
    let stack = TestStack::start().await;
    let (client, _) = stack.cards_client(ROLES).await;
    let card = new_card(&client).await;
    let other = new_card(&client).await;
    assert_eq!(
        balance(&client, &card).await,
        json!({"currencyCode": "GBP", "cardBalance": 0.0, "pendingAmount": 0.0, "availableBalance": 0.0})
    );

    let (status, body) = post(
        &client,
        &card,
        json!({"transactionType": "Load", "amount": 100.10, "currencyCode": "GBP", "user": "ops", "description": "Top up"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["transaction"][0]["transactionType"], "Load");
    assert_eq!(body["transaction"][0]["amount"], 100.1);
    assert_eq!(body["transaction"][0]["publicToken"], card.as_str());
    assert_eq!(body["balance"]["cardBalance"], 100.1);

    // Decimal text in, exactly: 0.1 + 0.2 is 0.30, not a float's 0.30000000000000004.
    for amount in ["0.1", "0.2"] {
        let (status, body) = post(
            &client,
            &card,
            json!({"transactionType": "Unload", "amount": amount, "currencyCode": "gbp"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(balance(&client, &card).await["cardBalance"], 99.8);

    // A fee, an adjustment each way, and a transfer with a fee in the same act.
    for body in [
        json!({"transactionType": "Fee", "amount": 1.5, "currencyCode": "GBP", "feeType": "Monthly"}),
        json!({"transactionType": "BalanceAdjustment", "amount": -0.3, "currencyCode": "GBP"}),
        json!({"transactionType": "BalanceAdjustment", "amount": "2.00", "currencyCode": "GBP"}),
    ] {
        let (status, answer) = post(&client, &card, body.clone()).await;
        assert_eq!(status, 200, "{body}: {answer}");
    }
    assert_eq!(balance(&client, &card).await["cardBalance"], 100.0);
    let (status, body) = post(
        &client,
        &card,
        json!({"transactionType": "TransferFunds", "amount": 40, "currencyCode": "GBP", "toPublicToken": other, "feeAmount": 0.5}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let legs = body["transaction"].as_array().unwrap();
    assert_eq!(legs.len(), 3, "both legs and the fee: {body}");
    assert_eq!(legs[0]["publicToken"], card.as_str());
    assert_eq!(legs[0]["amount"], -40.0);
    assert_eq!(legs[1]["publicToken"], other.as_str());
    assert_eq!(legs[1]["amount"], 40.0);
    assert_eq!(legs[2]["amount"], -0.5);
    assert_eq!(body["balance"]["cardBalance"], 59.5);
    assert_eq!(balance(&client, &other).await["availableBalance"], 40.0);
    let (_, shown, _) = client
        .call(Method::GET, &format!("/cards/{card}"), None)
        .await;
    assert_eq!(shown["balance"]["cardBalance"], 59.5);

    // The list: in order, Thredd's codes, each line's balances after it, the transfer linked.
    let (status, lines, _) = client
        .call(Method::GET, &format!("/cards/{card}/transactions"), None)
        .await;
    assert_eq!(status, 200, "{lines}");
    let lines = lines.as_array().unwrap();
    let codes: Vec<&str> = lines
        .iter()
        .map(|line| line["type"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["L", "U", "U", "F", "B", "B", "U", "F"]);
    assert!(lines.iter().all(|line| line["status"]["code"] == "S"));
    let running: Vec<f64> = lines
        .iter()
        .map(|line| line["amount"]["actualBalance"].as_f64().unwrap())
        .collect();
    assert_eq!(running, [100.1, 100.0, 99.8, 98.3, 98.0, 100.0, 60.0, 59.5]);
    assert_eq!(lines[0]["note"], "ops");
    assert_eq!(lines[0]["description"], "Top up");
    let (_, received, _) = client
        .call(Method::GET, &format!("/cards/{other}/transactions"), None)
        .await;
    assert_eq!(received[0]["type"]["code"], "L");
    assert_eq!(received[0]["transactionLink"], lines[6]["id"]);
    assert_eq!(lines[6]["transactionLink"], received[0]["id"]);

    // The sum of the lines is the balance.
    let sum: f64 = lines
        .iter()
        .map(|line| line["amount"]["billingValue"].as_f64().unwrap())
        .sum();
    assert!((sum - 59.5).abs() < 1e-9, "{sum}");

    // Dates filter by day; a bad date is refused by name.
    let today = time::OffsetDateTime::from_unix_timestamp(certbound_testkit::now())
        .unwrap()
        .date();
    let day = |date: time::Date| {
        format!(
            "{:04}{:02}{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        )
    };
    let (_, same_day, _) = client
        .call(
            Method::GET,
            &format!(
                "/cards/{card}/transactions?fromDate={}&toDate={}",
                day(today),
                day(today)
            ),
            None,
        )
        .await;
    assert_eq!(same_day.as_array().unwrap().len(), 8);
    let (_, tomorrow, _) = client
        .call(
            Method::GET,
            &format!(
                "/cards/{card}/transactions?fromDate={}",
                day(today.next_day().unwrap())
            ),
            None,
        )
        .await;
    assert_eq!(tomorrow, json!([]));
    let (status, body, _) = client
        .call(
            Method::GET,
            &format!("/cards/{card}/transactions?fromDate=2026-11-30"),
            None,
        )
        .await;
    refused(status, &body, 400, "fromDate", "YYYYMMDD");
}

#[tokio::test]
async fn what_the_ledger_refuses() {
    let stack = TestStack::start().await;
    let (client, _) = stack.cards_client(ROLES).await;
    let card = new_card(&client).await;
    let load =
        |amount: Value| json!({"transactionType": "Load", "amount": amount, "currencyCode": "GBP"});
    assert_eq!(post(&client, &card, load(json!(50))).await.0, 200);

    let (status, body) = post(
        &client,
        &card,
        json!({"transactionType": "Unload", "amount": 50.01, "currencyCode": "GBP"}),
    )
    .await;
    refused(
        status,
        &body,
        422,
        "amount",
        "more than the available balance, 50.00 GBP",
    );
    let (status, body) = post(
        &client,
        &card,
        json!({"transactionType": "Fee", "amount": 60, "currencyCode": "GBP"}),
    )
    .await;
    refused(status, &body, 422, "amount", "available balance");
    let (status, body) = post(
        &client,
        &card,
        json!({"transactionType": "Load", "amount": 5, "currencyCode": "EUR"}),
    )
    .await;
    refused(
        status,
        &body,
        422,
        "currencyCode",
        "the card's currency is GBP, not EUR",
    );
    let (status, body) = post(&client, &card, load(json!(4950.01))).await;
    refused(
        status,
        &body,
        422,
        "amount",
        "maximum balance of 5000.00 GBP",
    );
    assert_eq!(post(&client, &card, load(json!(4950))).await.0, 200);

    // Malformed: refused by name, before anything is decided.
    for (body, field, words) in [
        (load(json!(1.001)), "amount", "2 decimal places"),
        (load(json!(-1)), "amount", "positive"),
        (load(json!(0)), "amount", "more than zero"),
        (load(json!("ten")), "amount", "decimal number"),
        (
            json!({"transactionType": "TransferFunds", "amount": 1, "currencyCode": "GBP"}),
            "toPublicToken",
            "needs toPublicToken",
        ),
        (
            json!({"transactionType": "TransferFunds", "amount": 1, "currencyCode": "GBP", "toPublicToken": card}),
            "toPublicToken",
            "another card",
        ),
        (
            json!({"transactionType": "Load", "amount": 1, "currencyCode": "GBP", "toPublicToken": "123456789"}),
            "toPublicToken",
            "only TransferFunds",
        ),
        (
            json!({"transactionType": "Fee", "amount": 1, "currencyCode": "GBP", "feeAmount": 1}),
            "feeAmount",
            "a Fee's amount is the fee",
        ),
        (
            json!({"transactionType": "Refund", "amount": 1, "currencyCode": "GBP"}),
            "transactionType",
            "unknown variant",
        ),
        (
            json!({"transactionType": "Load", "amount": 1, "currencyCode": "GBP", "colour": "red"}),
            "colour",
            "unknown field",
        ),
    ] {
        let (status, answer) = post(&client, &card, body.clone()).await;
        refused(status, &answer, 400, field, words);
    }

    // A transfer to a card of another organisation: that card does not exist for this one.
    let (stranger, _) = stack.cards_client(ROLES).await;
    let foreign = new_card(&stranger).await;
    let (status, body) = post(
        &client,
        &card,
        json!({"transactionType": "TransferFunds", "amount": 1, "currencyCode": "GBP", "toPublicToken": foreign}),
    )
    .await;
    refused(status, &body, 422, "toPublicToken", "does not exist");
    assert_eq!(balance(&stranger, &foreign).await["cardBalance"], 0.0);

    // A stolen card takes no load but may be emptied; a closed one takes nothing.
    let set_status = |code: &'static str| {
        let client = &client;
        let card = card.clone();
        async move {
            let (status, body, _) = client
                .call(
                    Method::PUT,
                    &format!("/cards/{card}/status"),
                    Some(json!({"cardStatusCode": code})),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
    };
    set_status("43").await;
    let (status, body) = post(&client, &card, load(json!(1))).await;
    refused(status, &body, 422, "publicToken", "Stolen (43)");
    let (status, body) = post(
        &client,
        &card,
        json!({"transactionType": "Unload", "amount": 5000, "currencyCode": "GBP"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["balance"]["availableBalance"], 0.0);

    let closed = new_card(&client).await;
    let (status, body, _) = client
        .call(
            Method::PUT,
            &format!("/cards/{closed}/status"),
            Some(json!({"cardStatusCode": "46"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&client, &closed, load(json!(1))).await;
    refused(status, &body, 422, "publicToken", "takes no transactions");

    // Reading needs cards.read, posting cards.write.
    let (reader, _) = stack.cards_client(&["card-reader"]).await;
    let (status, _, _) = reader
        .call(
            Method::POST,
            &format!("/cards/{card}/transactions"),
            Some(load(json!(1))),
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn an_idempotency_key_posts_once_and_replays_the_answer() {
    let stack = TestStack::start().await;
    let (client, _) = stack.cards_client(ROLES).await;
    let card = new_card(&client).await;
    let key = uuid::Uuid::new_v4().to_string();
    let body = json!({"transactionType": "Load", "amount": 25, "currencyCode": "GBP"}).to_string();
    let path = format!("/cards/{card}/transactions");
    let (first_status, first, _) = client
        .raw(
            Method::POST,
            &path,
            Some(body.clone()),
            &[("IdempotencyKey", &key)],
        )
        .await;
    assert_eq!(first_status, 200, "{first}");
    // Copies at once and later: one posting, the same answer.
    let copies = copies_at_once(&client, &path, &body, &key, 5).await;
    for (status, answer) in copies {
        assert_eq!(status, 200);
        assert_eq!(answer, first);
    }
    assert_eq!(balance(&client, &card).await["cardBalance"], 25.0);
    let (_, lines, _) = client
        .call(Method::GET, &format!("/cards/{card}/transactions"), None)
        .await;
    assert_eq!(lines.as_array().unwrap().len(), 1);
    // The same key with another body is refused.
    let (status, _, _) = client
        .raw(
            Method::POST,
            &path,
            Some(
                json!({"transactionType": "Load", "amount": 26, "currencyCode": "GBP"}).to_string(),
            ),
            &[("IdempotencyKey", &key)],
        )
        .await;
    assert_eq!(status, 400);
}

async fn copies_at_once(
    client: &CardsClient<'_>,
    path: &str,
    body: &str,
    key: &str,
    copies: usize,
) -> Vec<(u16, Value)> {
    let headers = [("IdempotencyKey", key)];
    let mut set = Vec::new();
    for _ in 0..copies {
        set.push(client.raw(Method::POST, path, Some(body.to_owned()), &headers));
    }
    let mut answers = Vec::new();
    for answer in all_at_once(set).await {
        answers.push((answer.0, answer.1));
    }
    answers
}

/// Many concurrent unloads and transfers at two instances sharing one database can never take a
/// card below zero: of 30 unloads of 10 from a card holding 100 (half sent to each instance),
/// exactly 10 succeed and 20 are refused for the balance; the lines sum to the balance.
#[tokio::test]
async fn concurrent_debits_at_two_instances_never_overdraw() {
    let first = TestStack::start().await;
    if !first.shared_database() {
        return; // one server per SQLite file: two instances need PostgreSQL
    }
    let second = first.another_instance().await;
    let (here, _) = first.cards_client(ROLES).await;
    let there = here.at(&second);
    let card = new_card(&here).await;
    let sink = new_card(&here).await;
    assert_eq!(
        post(
            &here,
            &card,
            json!({"transactionType": "Load", "amount": 100, "currencyCode": "GBP"})
        )
        .await
        .0,
        200
    );
    let mut attempts = Vec::new();
    for n in 0..30 {
        let client = if n % 2 == 0 { &here } else { &there };
        let body = if n % 3 == 0 {
            json!({"transactionType": "TransferFunds", "amount": 10, "currencyCode": "GBP", "toPublicToken": sink})
        } else {
            json!({"transactionType": "Unload", "amount": 10, "currencyCode": "GBP"})
        };
        attempts.push(post(client, &card, body));
    }
    let answers = all_at_once(attempts).await;
    let accepted = answers.iter().filter(|(status, _)| *status == 200).count();
    let declined = answers
        .iter()
        .filter(|(status, body)| {
            *status == 422
                && body["errors"]["amount"]
                    .to_string()
                    .contains("available balance")
        })
        .count();
    assert_eq!(accepted, 10, "{answers:?}");
    assert_eq!(declined, 20, "{answers:?}");
    let left = balance(&there, &card).await;
    assert_eq!(left["cardBalance"], 0.0);
    let (_, lines, _) = here
        .call(Method::GET, &format!("/cards/{card}/transactions"), None)
        .await;
    let lines = lines.as_array().unwrap();
    assert_eq!(lines.len(), 11, "the load and ten debits");
    let running: Vec<f64> = lines
        .iter()
        .map(|line| line["amount"]["actualBalance"].as_f64().unwrap())
        .collect();
    assert!(running.iter().all(|balance| *balance >= 0.0), "{running:?}");
    let received = balance(&here, &sink).await["cardBalance"].as_f64().unwrap();
    let transfers = lines
        .iter()
        .filter(|line| line["processingCode"] == "40")
        .count();
    assert!((received - 10.0 * transfers as f64).abs() < 1e-9);
}

async fn authorise(client: &CardsClient<'_>, card: &str, amount: Value) -> (u16, Value) {
    let (status, body, _) = client
        .call(
            Method::POST,
            &format!("/sandbox/cards/{card}/authorisations"),
            Some(json!({"amount": amount, "currencyCode": "GBP", "merchant": {"name": "Corner Shop", "mcc": "5411", "country": "GBR"}})),
        )
        .await;
    (status, body)
}

async fn settle(
    client: &CardsClient<'_>,
    card: &str,
    authorisation: &Value,
    verb: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let id = authorisation["authorisationId"].as_str().unwrap();
    let (status, body, _) = client
        .call(
            Method::POST,
            &format!("/sandbox/cards/{card}/authorisations/{id}/{verb}"),
            body,
        )
        .await;
    (status, body)
}

fn money(balance: &Value) -> (f64, f64, f64) {
    (
        balance["cardBalance"].as_f64().unwrap(),
        balance["pendingAmount"].as_f64().unwrap(),
        balance["availableBalance"].as_f64().unwrap(),
    )
}

/// The sandbox's card network: holds, declines with real response codes, presentments and
/// reversals, each a line of the list; a settled authorisation cannot settle again.
#[tokio::test]
async fn purchases_through_the_simulated_network() {
    let stack = TestStack::start().await;
    let (client, _) = stack.cards_client(ROLES).await;
    let card = new_card(&client).await;
    post(
        &client,
        &card,
        json!({"transactionType": "Load", "amount": 100, "currencyCode": "GBP"}),
    )
    .await;

    let (status, coffee) = authorise(&client, &card, json!(20)).await;
    assert_eq!(status, 201, "{coffee}");
    assert_eq!(coffee["approved"], true);
    assert_eq!(coffee["responseCode"], "00");
    let auth_code = coffee["authCode"].as_str().unwrap();
    assert!(auth_code.len() == 6 && auth_code.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(money(&coffee["balance"]), (100.0, -20.0, 80.0));
    assert_eq!(money(&balance(&client, &card).await), (100.0, -20.0, 80.0));

    // More than is available: declined 51, nothing held.
    let (status, declined) = authorise(&client, &card, json!(80.01)).await;
    assert_eq!(status, 201, "{declined}");
    assert_eq!(declined["approved"], false);
    assert_eq!(declined["responseCode"], "51");
    assert!(declined["authCode"].is_null());
    assert_eq!(money(&declined["balance"]), (100.0, -20.0, 80.0));

    // The presentment settles the hold; it cannot happen twice, nor be reversed after.
    let (status, cleared) = settle(&client, &card, &coffee, "clear", None).await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["state"], "Cleared");
    assert_eq!(money(&cleared["balance"]), (80.0, 0.0, 80.0));
    for verb in ["clear", "reverse"] {
        let (status, body) = settle(&client, &card, &coffee, verb, None).await;
        assert_eq!(status, 409, "{verb}: {body}");
        assert!(body["errors"].to_string().contains("is Cleared"), "{body}");
    }
    let (status, _) = settle(&client, &card, &declined, "clear", None).await;
    assert_eq!(status, 409, "a declined authorisation cannot be cleared");

    // A reversal releases the hold.
    let (_, fuel) = authorise(&client, &card, json!(50)).await;
    assert_eq!(money(&fuel["balance"]), (80.0, -50.0, 30.0));
    let (status, reversed) = settle(&client, &card, &fuel, "reverse", None).await;
    assert_eq!(status, 200, "{reversed}");
    assert_eq!(money(&reversed["balance"]), (80.0, 0.0, 80.0));

    // A presentment over its hold (a tip) posts even below zero, as a network's would.
    let (_, dinner) = authorise(&client, &card, json!(80)).await;
    assert_eq!(dinner["responseCode"], "00");
    let (status, refused) = settle(
        &client,
        &card,
        &dinner,
        "clear",
        Some(json!({"amount": 160.01})),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["errors"]["amount"]
            .to_string()
            .contains("at most 2 times"),
        "{refused}"
    );
    let (status, tipped) = settle(
        &client,
        &card,
        &dinner,
        "clear",
        Some(json!({"amount": 92.5})),
    )
    .await;
    assert_eq!(status, 200, "{tipped}");
    assert_eq!(money(&tipped["balance"]), (-12.5, 0.0, -12.5));

    // Every step is a line, in order, with the balances it left.
    let (_, lines, _) = client
        .call(Method::GET, &format!("/cards/{card}/transactions"), None)
        .await;
    let steps: Vec<(String, String, f64, f64)> = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["type"]["code"].as_str().unwrap().to_owned(),
                line["status"]["code"].as_str().unwrap().to_owned(),
                line["amount"]["actualBalance"].as_f64().unwrap(),
                line["amount"]["availableBalance"].as_f64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("L", "S", 100.0, 100.0),
        ("A", "A", 100.0, 80.0),
        ("A", "I", 100.0, 80.0),
        ("P", "S", 80.0, 80.0),
        ("A", "A", 80.0, 30.0),
        ("D", "V", 80.0, 80.0),
        ("A", "A", 80.0, 0.0),
        ("P", "S", -12.5, -12.5),
    ];
    let expected: Vec<(String, String, f64, f64)> = expected
        .iter()
        .map(|(t, s, a, v)| ((*t).to_owned(), (*s).to_owned(), *a, *v))
        .collect();
    assert_eq!(steps, expected);
    assert_eq!(lines[3]["transactionLink"], coffee["authorisationId"]);

    // Status and expiry decide before funds: blocked 05, lost 41, expired 54.
    let other = new_card(&client).await;
    post(
        &client,
        &other,
        json!({"transactionType": "Load", "amount": 10, "currencyCode": "GBP"}),
    )
    .await;
    for (code, expected) in [("05", "05"), ("00", "00"), ("41", "41")] {
        let (status, body, _) = client
            .call(
                Method::PUT,
                &format!("/cards/{other}/status"),
                Some(json!({"cardStatusCode": code})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (_, answer) = authorise(&client, &other, json!(1)).await;
        assert_eq!(answer["responseCode"], expected, "status {code}: {answer}");
    }
    let expiring = new_card(&client).await;
    expire(&stack, &expiring).await;
    let (_, answer) = authorise(&client, &expiring, json!(1)).await;
    assert_eq!(answer["responseCode"], "54", "{answer}");

    // Another currency is refused: the sandbox converts nothing.
    let (status, body, _) = client
        .call(
            Method::POST,
            &format!("/sandbox/cards/{card}/authorisations"),
            Some(json!({"amount": 1, "currencyCode": "EUR"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body, _) = client
        .call(
            Method::POST,
            &format!("/sandbox/cards/{card}/authorisations"),
            Some(json!({"amount": 1, "currencyCode": "GBP", "merchant": {"mcc": "shop"}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"]["merchant.mcc"].is_array(), "{body}");
}

/// Sets a card's expiry date to a past day, through the running stack's store (the API refuses
/// past dates; a write beside the store would bypass the card memory an embedded store keeps).
async fn expire(stack: &TestStack, card: &str) {
    use certbound_store::CardsStore as _;
    let store = &stack.stack.database;
    let mut record = store.card(card).await.unwrap().unwrap();
    let mut details: Value = serde_json::from_str(&record.details).unwrap();
    details["expiryDate"] = json!("2020-01-31");
    record.details = details.to_string();
    assert!(
        store.update_card(&record).await.unwrap(),
        "the card changed meanwhile"
    );
}

/// Concurrent authorisations at two instances never hold more than is available: of 20 of 10
/// on 100, exactly 10 are approved and 10 declined 51.
#[tokio::test]
async fn concurrent_authorisations_at_two_instances_never_hold_more_than_is_there() {
    let first = TestStack::start().await;
    if !first.shared_database() {
        return; // one server per SQLite file: two instances need PostgreSQL
    }
    let second = first.another_instance().await;
    let (here, _) = first.cards_client(ROLES).await;
    let there = here.at(&second);
    let card = new_card(&here).await;
    post(
        &here,
        &card,
        json!({"transactionType": "Load", "amount": 100, "currencyCode": "GBP"}),
    )
    .await;
    let attempts: Vec<_> = (0..20)
        .map(|n| authorise(if n % 2 == 0 { &here } else { &there }, &card, json!(10)))
        .collect();
    let answers = all_at_once(attempts).await;
    let codes: Vec<&str> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 201, "{body}");
            body["responseCode"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        codes.iter().filter(|code| **code == "00").count(),
        10,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|code| **code == "51").count(),
        10,
        "{codes:?}"
    );
    assert_eq!(money(&balance(&there, &card).await), (100.0, -100.0, 0.0));
}

/// `[sandbox] card_network = false`: the network's calls do not exist.
#[tokio::test]
async fn the_network_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let stack = TestStack::start_with(
        dir,
        certbound_testkit::fresh_database_url().await,
        |config| {
            config.sandbox.card_network = false;
        },
    )
    .await;
    let (client, _) = stack.cards_client(ROLES).await;
    let card = new_card(&client).await;
    let (status, _) = authorise(&client, &card, json!(1)).await;
    assert_eq!(status, 404);
}

/// On SQLite the stack remembers the cards it read (DESIGN.md section 7's hot path): a second
/// read of a card comes from memory, and every write shows in the next read at once — a load
/// (the ledger's write), a status change (the card's own write), an update through the store.
#[tokio::test]
async fn a_remembered_card_shows_every_write_at_once() {
    let stack = TestStack::start().await;
    let (client, _) = stack.cards_client(ROLES).await;
    let card = new_card(&client).await;
    let show = || async {
        let (status, body, _) = client
            .call(Method::GET, &format!("/cards/{card}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    };
    let (hits_before, _) = stack.stack.database.card_lookups();
    show().await;
    show().await;
    let (hits, _) = stack.stack.database.card_lookups();
    if stack.shared_database() {
        assert_eq!(hits, 0, "PostgreSQL keeps no card memory");
    } else {
        assert!(hits > hits_before, "the second read came from memory");
    }
    let (status, body) = post(
        &client,
        &card,
        json!({"transactionType": "Load", "amount": 25, "currencyCode": "GBP"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(show().await["balance"]["availableBalance"], json!(25.0));
    let (status, body, _) = client
        .call(
            Method::PUT,
            &format!("/cards/{card}/status"),
            Some(json!({"cardStatusCode": "41"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(show().await["cardStatusCode"], "41");
    expire(&stack, &card).await;
    assert_eq!(show().await["cardDetails"]["expiryDate"], "2020-01-31");
    stack.stop().await;
}
