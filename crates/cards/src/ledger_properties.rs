//! Property-based tests of the ledger (issue 18): random sequences of loads, unloads, fees,
//! adjustments and transfers over three cards, decided by [`crate::ledger`]'s rules and applied
//! by the real store (SQLite here; PostgreSQL too when `CERTBOUND_TEST_DATABASE_URL` names one),
//! checked against a model after every step, with holds of the simulated card network (approved
//! or declined, then cleared or reversed, once). The invariants: each balance is the sum of its
//! card's settled lines; the pending amount is the holds not yet settled; each line's balance is the one before it plus its amount, lines numbered without
//! gaps; available = balance + pending; no card ever goes below zero or above its maximum; a
//! refusal changes nothing; a replayed request (the same request id) posts nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use std::collections::HashMap;

use certbound_store::{CardRecord, CardsStore, Database, Posted, Posting, TransactionLine};
use proptest::prelude::*;

use crate::ledger::{self, Direction, Purse};
use crate::model::CardStatus;

const CARDS: usize = 3;
/// The maximum balance, 5000.00 GBP in minor units.
const MAX: i64 = 500_000;

#[derive(Clone, Debug)]
enum Op {
    Credit {
        card: usize,
        amount: i64,
    },
    Debit {
        card: usize,
        amount: i64,
    },
    Transfer {
        from: usize,
        to: usize,
        amount: i64,
    },
    Replay {
        of: usize,
    },
    /// An authorisation through the network: a hold if approved.
    Hold {
        card: usize,
        amount: i64,
    },
    /// The clearing (true) or reversal (false) of the n-th hold made.
    Settle {
        of: usize,
        clear: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    // Amounts up to 3000.00 so that both limits are met often.
    let amount = 1_i64..300_000;
    prop_oneof![
        (0..CARDS, amount.clone()).prop_map(|(card, amount)| Op::Credit { card, amount }),
        (0..CARDS, amount.clone()).prop_map(|(card, amount)| Op::Debit { card, amount }),
        (0..CARDS, 0..CARDS, amount).prop_map(|(from, to, amount)| Op::Transfer {
            from,
            to,
            amount
        }),
        (0_usize..64).prop_map(|of| Op::Replay { of }),
        (0..CARDS, 1_i64..100_000).prop_map(|(card, amount)| Op::Hold { card, amount }),
        (0_usize..64, any::<bool>()).prop_map(|(of, clear)| Op::Settle { of, clear }),
    ]
}

async fn database(dir: &tempfile::TempDir) -> Database {
    match std::env::var("CERTBOUND_TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => Database::connect(&url).await.unwrap(),
        _ => Database::connect(&format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("ledger.db").display()
        ))
        .await
        .unwrap(),
    }
}

fn card_record(token: &str) -> CardRecord {
    CardRecord {
        public_token: token.to_owned(),
        organisation_id: "org".into(),
        client_id: "client".into(),
        details: "{}".into(),
        pan_sealed: String::new(),
        cvv_sealed: String::new(),
        pin_sealed: None,
        status_code: CardStatus::Active.code().into(),
        status_updated: "{}".into(),
        cvv_blocked: false,
        created_at: 0,
        updated_at: 0,
        version: 0,
        idempotency_id: None,
        balance_minor: 0,
        pending_minor: 0,
    }
}

fn line(token: &str, amount: i64, request: &str, leg: i64) -> TransactionLine {
    TransactionLine {
        id: uuid::Uuid::new_v4().to_string(),
        public_token: token.to_owned(),
        organisation_id: "org".into(),
        line: 0,
        type_code: "L".into(),
        status_code: "S".into(),
        transaction_type: "Load".into(),
        amount_minor: amount,
        currency: "GBP".into(),
        actual_balance: 0,
        available_balance: 0,
        description: String::new(),
        note: None,
        link: None,
        processing_code: "00".into(),
        request_id: Some(request.to_owned()),
        leg,
        created_at: 1,
    }
}

async fn purse(store: &Database, token: &str) -> Purse {
    let card = store.card(token).await.unwrap().unwrap();
    Purse {
        status: CardStatus::Active,
        currency: "GBP".into(),
        balance: card.balance_minor,
        pending: card.pending_minor,
        max_balance: MAX,
        replaced_by: None,
    }
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let store = database(&dir).await;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let tokens: Vec<String> = (0..CARDS).map(|n| format!("{}{n}", &unique[..8])).collect();
    for token in &tokens {
        assert!(store.insert_card(&card_record(token)).await.unwrap());
    }
    let mut model: HashMap<String, i64> = tokens.iter().map(|t| (t.clone(), 0)).collect();
    let mut requests: Vec<Vec<Posting>> = Vec::new();
    // Holds made: (authorisation id, card, amount, still pending in the model).
    let mut holds: Vec<(String, usize, i64, bool)> = Vec::new();
    let mut pending: HashMap<String, i64> = tokens.iter().map(|t| (t.clone(), 0)).collect();
    for (step, op) in ops.into_iter().enumerate() {
        let request = format!("{unique}-{step}");
        if let Op::Hold { card, amount } = op {
            let token = &tokens[card];
            let purse = purse(&store, token).await;
            let approved =
                ledger::authorise(&purse, amount, false) == ledger::ResponseCode::Approved;
            assert_eq!(
                approved,
                amount <= model[token] + pending[token],
                "the network disagrees with the model"
            );
            let id = format!("{request}-auth");
            let (decided, state) = if approved {
                (ledger::hold(amount), "Pending")
            } else {
                (ledger::nothing(), "Declined")
            };
            let record = certbound_store::AuthorisationRecord {
                id: id.clone(),
                public_token: token.clone(),
                organisation_id: "org".into(),
                amount_minor: amount,
                currency: "GBP".into(),
                merchant: "{}".into(),
                state: state.into(),
                response_code: "00".into(),
                auth_code: None,
                created_at: 1,
                updated_at: 1,
            };
            let posted = store
                .post_with(
                    &[posting_of(decided, line(token, -amount, &request, 0), "A")],
                    Some(&certbound_store::AuthorisationChange::Insert(record)),
                    None,
                )
                .await
                .unwrap();
            assert!(matches!(posted, Posted::Done(_)));
            if approved {
                *pending.get_mut(token).unwrap() -= amount;
                holds.push((id, card, amount, true));
            }
            check_card(&store, token, model[token], pending[token]).await;
            continue;
        }
        if let Op::Settle { of, clear } = op {
            if holds.is_empty() {
                continue;
            }
            let index = of % holds.len();
            let (id, card, amount, open) = holds[index].clone();
            let token = &tokens[card];
            let (decided, signed, status) = if clear {
                (ledger::clear(amount, amount), -amount, "S")
            } else {
                (ledger::release(amount), amount, "V")
            };
            let change = certbound_store::AuthorisationChange::Transition {
                id,
                from: "Pending".into(),
                to: if clear {
                    "Cleared".into()
                } else {
                    "Reversed".into()
                },
                now: 1,
            };
            let before = balances(&store, &tokens).await;
            let posted = store
                .post_with(
                    &[posting_of(
                        decided,
                        line(token, signed, &request, 0),
                        status,
                    )],
                    Some(&change),
                    None,
                )
                .await
                .unwrap();
            match (open, posted) {
                (true, Posted::Done(_)) => {
                    *pending.get_mut(token).unwrap() += amount;
                    if clear {
                        *model.get_mut(token).unwrap() -= amount;
                    }
                    holds[index].3 = false;
                }
                (false, Posted::Refused(_)) => {
                    assert_eq!(
                        balances(&store, &tokens).await,
                        before,
                        "a second settlement changed something"
                    );
                }
                (open, posted) => panic!("settling a hold (open: {open}) gave {posted:?}"),
            }
            check_card(&store, token, model[token], pending[token]).await;
            continue;
        }
        // Each leg decided on the card as it is now, by the ledger's rules.
        let legs: Vec<(usize, Direction, i64)> = match op {
            Op::Credit { card, amount } => vec![(card, Direction::Credit, amount)],
            Op::Debit { card, amount } => vec![(card, Direction::Debit, amount)],
            Op::Transfer { from, to, amount } if from != to => {
                vec![
                    (from, Direction::Debit, amount),
                    (to, Direction::Credit, amount),
                ]
            }
            Op::Transfer { .. } | Op::Hold { .. } | Op::Settle { .. } => continue,
            Op::Replay { of } => {
                let Some(postings) = requests.get(of % requests.len().max(1)) else {
                    continue;
                };
                let before = balances(&store, &tokens).await;
                let replayed = store.post(postings).await;
                assert!(
                    !matches!(replayed, Ok(Posted::Done(_))),
                    "a replayed request posted"
                );
                assert_eq!(
                    balances(&store, &tokens).await,
                    before,
                    "a replay changed something"
                );
                continue;
            }
        };
        let mut postings = Vec::new();
        let mut refused = false;
        for (leg, (card, direction, amount)) in legs.iter().enumerate() {
            let token = &tokens[*card];
            let purse = purse(&store, token).await;
            match ledger::decide(&purse, *direction, *amount, "GBP") {
                Ok(decided) => {
                    let signed = decided.balance_delta;
                    postings.push(Posting {
                        expected_status: CardStatus::Active.code().into(),
                        expected_version: None,
                        balance_delta: decided.balance_delta,
                        pending_delta: decided.pending_delta,
                        available_floor: decided.available_floor,
                        balance_ceiling: decided.balance_ceiling,
                        line: line(token, signed, &request, leg as i64),
                    });
                }
                Err(_) => refused = true,
            }
        }
        let model_allows = legs.iter().all(|(card, direction, amount)| {
            let balance = model[&tokens[*card]];
            match direction {
                Direction::Debit => *amount <= balance + pending[&tokens[*card]],
                Direction::Credit => balance + amount <= MAX,
            }
        });
        assert_eq!(!refused, model_allows, "the rules disagree with the model");
        if refused {
            continue;
        }
        let before = balances(&store, &tokens).await;
        match store.post(&postings).await.unwrap() {
            Posted::Done(lines) => {
                assert_eq!(lines.len(), legs.len());
                for (card, direction, amount) in &legs {
                    let balance = model.get_mut(&tokens[*card]).unwrap();
                    match direction {
                        Direction::Debit => *balance -= amount,
                        Direction::Credit => *balance += amount,
                    }
                }
                requests.push(postings);
            }
            Posted::Refused(_) => {
                assert_eq!(
                    balances(&store, &tokens).await,
                    before,
                    "a refusal changed something"
                );
            }
        }
        for token in &tokens {
            check_card(&store, token, model[token], pending[token]).await;
        }
    }
}

async fn balances(store: &Database, tokens: &[String]) -> Vec<(i64, i64)> {
    let mut all = Vec::new();
    for token in tokens {
        let card = store.card(token).await.unwrap().unwrap();
        all.push((card.balance_minor, card.pending_minor));
    }
    all
}

async fn check_card(store: &Database, token: &str, expected: i64, held: i64) {
    let card = store.card(token).await.unwrap().unwrap();
    assert_eq!(
        card.balance_minor, expected,
        "the store disagrees with the model"
    );
    assert_eq!(
        card.pending_minor, held,
        "the holds disagree with the model"
    );
    assert!(card.balance_minor >= 0 && card.balance_minor <= MAX);
    assert!(card.balance_minor + card.pending_minor >= 0, "overdrawn");
    let lines = store.transaction_lines(token, 0, i64::MAX).await.unwrap();
    // The balance is the sum of the settled lines; holds and reversals move the pending amount.
    let settled = |line: &TransactionLine| line.status_code == "S";
    let sum: i64 = lines
        .iter()
        .filter(|line| settled(line))
        .map(|line| line.amount_minor)
        .sum();
    assert_eq!(
        sum, card.balance_minor,
        "the balance is not the sum of its settled lines"
    );
    let mut previous = 0;
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(line.line, n as i64 + 1, "lines are numbered without gaps");
        let moved = if settled(line) { line.amount_minor } else { 0 };
        assert_eq!(line.actual_balance, previous + moved);
        assert!(line.available_balance >= 0);
        previous = line.actual_balance;
    }
    if let Some(last) = lines.last() {
        assert_eq!(
            last.available_balance,
            card.balance_minor + card.pending_minor,
            "available = balance + holds"
        );
    }
}

fn posting_of(decided: ledger::Decided, mut line: TransactionLine, status: &str) -> Posting {
    line.status_code = status.to_owned();
    Posting {
        expected_status: CardStatus::Active.code().into(),
        expected_version: None,
        balance_delta: decided.balance_delta,
        pending_delta: decided.pending_delta,
        available_floor: decided.available_floor,
        balance_ceiling: decided.balance_ceiling,
        line,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_keeps_its_invariants(ops in proptest::collection::vec(op(), 1..40)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(ops));
    }
}
