//! The card ledger's rules (DESIGN.md section 11), as pure functions over plain data: money,
//! transaction types and their codes, and the decision of what a posting does to a card.
//!
//! Money is exact: integer minor units inside (`i64`), decimal text on the way in (a JSON number's
//! or string's digits, never a float's arithmetic) and a JSON number on the way out, made from
//! the integer by one division whose shortest round-trip text is the exact decimal (exact for
//! every amount below 2^53 minor units; [`MAX_AMOUNT`] is far below).
//!
//! The store applies a decided posting with one conditional UPDATE per card (the status it was
//! decided on, the available floor, the balance ceiling), so two instances deciding at once can
//! never overdraw a card: the loser's UPDATE matches no row, and it decides again on what is
//! there now.

use serde::Deserialize;
use serde_json::Value;

use crate::CardsError;
use crate::model::CardStatus;

/// The largest amount one posting may carry, in minor units (ten billion major units).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// A product's default maximum balance, in major units (DESIGN.md section 11).
pub const DEFAULT_MAX_BALANCE: i64 = 5000;

/// The number of decimals of an ISO 4217 currency (2 unless listed).
pub fn exponent(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Minor units in one major unit of `currency`.
pub fn scale(currency: &str) -> i64 {
    10_i64.pow(exponent(currency))
}

/// Reads a positive amount of `currency` from a JSON number or a decimal string, exactly: at
/// most the currency's decimals, more than zero, at most [`MAX_AMOUNT`] minor units.
pub fn parse_amount(value: &Value, currency: &str) -> Result<i64, String> {
    let text = match value {
        Value::Number(number) => number.to_string(),
        Value::String(text) => text.trim().to_owned(),
        _ => return Err("must be a positive decimal number, such as 10.50".into()),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let decimals = exponent(currency);
    if whole.is_empty()
        || !whole.bytes().all(|byte| byte.is_ascii_digit())
        || !fraction.bytes().all(|byte| byte.is_ascii_digit())
        || (text.contains('.') && fraction.is_empty())
    {
        return Err(format!(
            "must be a positive decimal number, such as 10.50, got `{text}`"
        ));
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > decimals as usize {
        return Err(format!(
            "{currency} has {decimals} decimal places; `{text}` has more"
        ));
    }
    let too_large = || format!("must be at most {}", format_major(MAX_AMOUNT, currency));
    let whole: i64 = whole.parse().map_err(|_| too_large())?;
    let mut minor = whole.checked_mul(scale(currency)).ok_or_else(too_large)?;
    if !fraction.is_empty() {
        let padded = format!("{fraction:0<width$}", width = decimals as usize);
        minor = minor
            .checked_add(padded.parse::<i64>().map_err(|_| too_large())?)
            .ok_or_else(too_large)?;
    }
    if minor == 0 {
        return Err("must be more than zero".into());
    }
    if minor > MAX_AMOUNT {
        return Err(too_large());
    }
    Ok(minor)
}

/// Reads a signed amount (a balance adjustment): a leading `-` makes it a debit.
pub fn parse_signed_amount(value: &Value, currency: &str) -> Result<(Direction, i64), String> {
    let text = match value {
        Value::Number(number) => number.to_string(),
        Value::String(text) => text.trim().to_owned(),
        _ => return Err("must be a decimal number, such as 10.50 or -2.00".into()),
    };
    match text.strip_prefix('-') {
        Some(rest) => Ok((
            Direction::Debit,
            parse_amount(&Value::String(rest.to_owned()), currency)?,
        )),
        None => Ok((
            Direction::Credit,
            parse_amount(&Value::String(text), currency)?,
        )),
    }
}

/// An amount as the wire carries it: a JSON number with the currency's decimals' value.
pub fn amount_json(minor: i64, currency: &str) -> Value {
    let major = minor as f64 / scale(currency) as f64;
    serde_json::Number::from_f64(major).map_or(Value::Null, Value::Number)
}

/// An amount as text, for messages: `12.50 GBP`.
pub fn format_major(minor: i64, currency: &str) -> String {
    let decimals = exponent(currency) as usize;
    let scale = scale(currency);
    let sign = if minor < 0 { "-" } else { "" };
    let absolute = minor.unsigned_abs();
    let whole = absolute / scale.unsigned_abs();
    let fraction = absolute % scale.unsigned_abs();
    if decimals == 0 {
        format!("{sign}{whole} {currency}")
    } else {
        format!("{sign}{whole}.{fraction:0decimals$} {currency}")
    }
}

/// `transactionType` of `POST /cards/{publicToken}/transactions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum TransactionType {
    /// A correction by the programme manager: a positive amount credits the card, a negative
    /// one debits it.
    BalanceAdjustment,
    /// A fee charged to the card.
    Fee,
    /// Money onto the card.
    Load,
    /// Money from this card to another of the same organisation and currency.
    TransferFunds,
    /// Money off the card.
    Unload,
}

impl TransactionType {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::BalanceAdjustment => "BalanceAdjustment",
            Self::Fee => "Fee",
            Self::Load => "Load",
            Self::TransferFunds => "TransferFunds",
            Self::Unload => "Unload",
        }
    }
}

/// Thredd's transaction type codes (`type.code` in the transaction list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeCode {
    /// `A`: an authorisation (a hold).
    Authorisation,
    /// `B`: a balance adjustment.
    BalanceAdjustment,
    /// `D`: an authorisation reversed.
    AuthorisationReversal,
    /// `F`: a fee.
    Fee,
    /// `L`: a load.
    Load,
    /// `P`: a presentment (clearing).
    Presentment,
    /// `U`: an unload.
    Unload,
}

impl TypeCode {
    /// Every code.
    pub const ALL: [Self; 7] = [
        Self::Authorisation,
        Self::BalanceAdjustment,
        Self::AuthorisationReversal,
        Self::Fee,
        Self::Load,
        Self::Presentment,
        Self::Unload,
    ];

    /// The one-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Authorisation => "A",
            Self::BalanceAdjustment => "B",
            Self::AuthorisationReversal => "D",
            Self::Fee => "F",
            Self::Load => "L",
            Self::Presentment => "P",
            Self::Unload => "U",
        }
    }

    /// Its description.
    pub fn description(self) -> &'static str {
        match self {
            Self::Authorisation => "Authorisation",
            Self::BalanceAdjustment => "Balance adjustment",
            Self::AuthorisationReversal => "Authorisation reversal",
            Self::Fee => "Fee",
            Self::Load => "Load",
            Self::Presentment => "Presentment",
            Self::Unload => "Unload",
        }
    }

    /// The type with this code.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.code() == code)
    }
}

/// Thredd's transaction status codes (`status.code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusCode {
    /// `A`: accepted (an authorisation holding funds).
    Accepted,
    /// `I`: declined.
    Declined,
    /// `V`: reversed.
    Reversed,
    /// `S`: settled (posted to the balance).
    Settled,
}

impl StatusCode {
    /// Every code.
    pub const ALL: [Self; 4] = [
        Self::Accepted,
        Self::Declined,
        Self::Reversed,
        Self::Settled,
    ];

    /// The one-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Accepted => "A",
            Self::Declined => "I",
            Self::Reversed => "V",
            Self::Settled => "S",
        }
    }

    /// Its description.
    pub fn description(self) -> &'static str {
        match self {
            Self::Accepted => "Accepted",
            Self::Declined => "Declined",
            Self::Reversed => "Reversed",
            Self::Settled => "Settled",
        }
    }

    /// The status with this code.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.code() == code)
    }
}

/// Whether a posting adds to a card or takes from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Adds to the balance.
    Credit,
    /// Takes from the balance.
    Debit,
}

/// A card's money and what decides what it may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purse {
    /// Its status.
    pub status: CardStatus,
    /// Its currency.
    pub currency: String,
    /// The settled balance, minor units.
    pub balance: i64,
    /// Pending holds, minor units (zero or negative).
    pub pending: i64,
    /// The product's maximum balance, minor units.
    pub max_balance: i64,
    /// The card that replaced this one, if any: it takes no more money.
    pub replaced_by: Option<String>,
}

impl Purse {
    /// What may be spent: the balance less the holds.
    pub fn available(&self) -> i64 {
        self.balance + self.pending
    }
}

/// One card's share of a decided act: what the store applies and the conditions it checks again
/// atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    /// Added to the balance (negative for a debit).
    pub balance_delta: i64,
    /// Added to the pending holds.
    pub pending_delta: i64,
    /// The least available balance allowed after (none: a presentment posts whatever).
    pub available_floor: Option<i64>,
    /// The most balance allowed after.
    pub balance_ceiling: Option<i64>,
}

fn refuse(field: &str, message: String) -> CardsError {
    CardsError::Unprocessable {
        field: field.to_owned(),
        message,
    }
}

/// Whether `purse` may take a posting in `direction` at all: nothing on a closed card; no money
/// onto a card that is stolen, closed or destroyed (Thredd: 43, 46, 83; certbound has no 54, 62
/// or 99 status).
pub fn status_allows(purse: &Purse, direction: Direction) -> Result<(), CardsError> {
    if purse.status == CardStatus::Closed {
        return Err(refuse(
            "publicToken",
            format!(
                "the card is {} ({}): it takes no transactions",
                purse.status.name(),
                purse.status.code()
            ),
        ));
    }
    if let (Direction::Credit, Some(by)) = (direction, &purse.replaced_by) {
        return Err(refuse(
            "publicToken",
            format!("the card was replaced by card {by}: no money may be loaded onto it"),
        ));
    }
    if direction == Direction::Credit
        && matches!(purse.status, CardStatus::Stolen | CardStatus::Destroyed)
    {
        return Err(refuse(
            "publicToken",
            format!(
                "the card is {} ({}): no money may be loaded onto it",
                purse.status.name(),
                purse.status.code()
            ),
        ));
    }
    Ok(())
}

/// The currency check: a posting is in the card's currency.
pub fn same_currency(purse: &Purse, currency: &str) -> Result<(), CardsError> {
    if purse.currency != currency {
        return Err(refuse(
            "currencyCode",
            format!("the card's currency is {}, not {currency}", purse.currency),
        ));
    }
    Ok(())
}

/// Decides a posting of `amount` (positive, minor units) in `direction` on `purse`: a debit only
/// up to the available balance, a credit only up to the maximum balance.
pub fn decide(
    purse: &Purse,
    direction: Direction,
    amount: i64,
    currency: &str,
) -> Result<Decided, CardsError> {
    same_currency(purse, currency)?;
    status_allows(purse, direction)?;
    match direction {
        Direction::Debit => {
            if amount > purse.available() {
                return Err(refuse(
                    "amount",
                    format!(
                        "{} is more than the available balance, {}",
                        format_major(amount, currency),
                        format_major(purse.available(), currency)
                    ),
                ));
            }
            Ok(Decided {
                balance_delta: -amount,
                pending_delta: 0,
                available_floor: Some(0),
                balance_ceiling: None,
            })
        }
        Direction::Credit => {
            if purse.balance + amount > purse.max_balance {
                return Err(refuse(
                    "amount",
                    format!(
                        "the balance would be {}, over the product's maximum balance of {}",
                        format_major(purse.balance + amount, currency),
                        format_major(purse.max_balance, currency)
                    ),
                ));
            }
            Ok(Decided {
                balance_delta: amount,
                pending_delta: 0,
                available_floor: None,
                balance_ceiling: Some(purse.max_balance),
            })
        }
    }
}

/// Applies a decided posting to a purse, as the store does (for the property tests and for the
/// answer when the store is not asked again).
pub fn apply(purse: &Purse, decided: &Decided) -> Option<Purse> {
    let balance = purse.balance + decided.balance_delta;
    let pending = purse.pending + decided.pending_delta;
    if decided
        .available_floor
        .is_some_and(|floor| balance + pending < floor)
        || decided
            .balance_ceiling
            .is_some_and(|ceiling| balance > ceiling)
    {
        return None;
    }
    Some(Purse {
        balance,
        pending,
        ..purse.clone()
    })
}

/// The ISO 8583 (DE39) response codes the sandbox's card network answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseCode {
    /// `00`.
    Approved,
    /// `05`: the card is blocked.
    DoNotHonour,
    /// `54`.
    ExpiredCard,
    /// `51`.
    InsufficientFunds,
    /// `41`: pick up, lost card.
    LostCard,
    /// `62`: the card may not be used (inactive, closed, destroyed).
    RestrictedCard,
    /// `43`: pick up, stolen card.
    StolenCard,
}

impl ResponseCode {
    /// Every code.
    pub const ALL: [Self; 7] = [
        Self::Approved,
        Self::DoNotHonour,
        Self::ExpiredCard,
        Self::InsufficientFunds,
        Self::LostCard,
        Self::RestrictedCard,
        Self::StolenCard,
    ];

    /// The code with these two digits.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|known| known.code() == code)
    }

    /// The two digits.
    pub fn code(self) -> &'static str {
        match self {
            Self::Approved => "00",
            Self::DoNotHonour => "05",
            Self::ExpiredCard => "54",
            Self::InsufficientFunds => "51",
            Self::LostCard => "41",
            Self::RestrictedCard => "62",
            Self::StolenCard => "43",
        }
    }

    /// What it means.
    pub fn description(self) -> &'static str {
        match self {
            Self::Approved => "Approved",
            Self::DoNotHonour => "Do not honour",
            Self::ExpiredCard => "Expired card",
            Self::InsufficientFunds => "Insufficient funds",
            Self::LostCard => "Lost card, pick up",
            Self::RestrictedCard => "Restricted card",
            Self::StolenCard => "Stolen card, pick up",
        }
    }
}

/// The network's answer to an authorisation of `amount` on `purse` (which is `expired` or not):
/// the card's status first, then its expiry, then the available balance.
pub fn authorise(purse: &Purse, amount: i64, expired: bool) -> ResponseCode {
    match purse.status {
        CardStatus::Active => {}
        CardStatus::Blocked => return ResponseCode::DoNotHonour,
        CardStatus::Lost => return ResponseCode::LostCard,
        CardStatus::Stolen => return ResponseCode::StolenCard,
        CardStatus::Closed | CardStatus::Destroyed | CardStatus::Inactive => {
            return ResponseCode::RestrictedCard;
        }
    }
    if expired {
        return ResponseCode::ExpiredCard;
    }
    if amount > purse.available() {
        return ResponseCode::InsufficientFunds;
    }
    ResponseCode::Approved
}

/// An approved authorisation's hold: the available balance falls, the balance does not.
pub fn hold(amount: i64) -> Decided {
    Decided {
        balance_delta: 0,
        pending_delta: -amount,
        available_floor: Some(0),
        balance_ceiling: None,
    }
}

/// A presentment (clearing) of a hold of `held` for `presented`: the hold is released and the
/// presented amount debited. It posts whatever the balance then is, as a real network's clearing
/// does (a presentment over the hold can take the balance below zero).
pub fn clear(held: i64, presented: i64) -> Decided {
    Decided {
        balance_delta: -presented,
        pending_delta: held,
        available_floor: None,
        balance_ceiling: None,
    }
}

/// A reversal: the hold is released.
pub fn release(amount: i64) -> Decided {
    Decided {
        balance_delta: 0,
        pending_delta: amount,
        available_floor: None,
        balance_ceiling: None,
    }
}

/// A line that changes no money (a declined authorisation).
pub fn nothing() -> Decided {
    Decided {
        balance_delta: 0,
        pending_delta: 0,
        available_floor: None,
        balance_ceiling: None,
    }
}

#[cfg(test)]
// Amounts in minor units read best as major_minor (100_25 is 100.25).
#[allow(clippy::inconsistent_digit_grouping)]
mod tests {
    use super::*;

    fn purse(balance: i64) -> Purse {
        Purse {
            status: CardStatus::Active,
            currency: "GBP".into(),
            balance,
            pending: 0,
            max_balance: 5000_00,
            replaced_by: None,
        }
    }

    #[test]
    fn amounts_are_read_exactly() {
        let gbp = |text: &str| parse_amount(&Value::String(text.into()), "GBP");
        assert_eq!(gbp("10"), Ok(10_00));
        assert_eq!(gbp("10.5"), Ok(10_50));
        assert_eq!(gbp("10.50"), Ok(10_50));
        assert_eq!(gbp("0.01"), Ok(1));
        assert_eq!(gbp("0.10"), Ok(10));
        assert!(gbp("10.001").unwrap_err().contains("2 decimal places"));
        assert!(gbp("0").unwrap_err().contains("more than zero"));
        assert!(gbp("-5").is_err());
        assert!(gbp("1e3").is_err());
        assert!(gbp("10.").is_err());
        assert!(gbp(".5").is_err());
        assert!(gbp("99999999999999999999").is_err());
        assert_eq!(parse_amount(&serde_json::json!(100.25), "GBP"), Ok(100_25));
        assert_eq!(parse_amount(&serde_json::json!(12), "JPY"), Ok(12));
        assert!(parse_amount(&serde_json::json!(1.5), "JPY").is_err());
        assert_eq!(parse_amount(&serde_json::json!(1.125), "KWD"), Ok(1125));
        assert!(parse_amount(&serde_json::json!(true), "GBP").is_err());
        assert_eq!(
            parse_signed_amount(&serde_json::json!(-2.5), "GBP"),
            Ok((Direction::Debit, 2_50))
        );
        assert_eq!(
            parse_signed_amount(&serde_json::json!("3"), "GBP"),
            Ok((Direction::Credit, 3_00))
        );
        assert!(parse_signed_amount(&serde_json::json!("--3"), "GBP").is_err());
    }

    #[test]
    fn amounts_are_written_as_their_decimals() {
        assert_eq!(amount_json(10_50, "GBP").to_string(), "10.5");
        assert_eq!(amount_json(1, "GBP").to_string(), "0.01");
        assert_eq!(
            amount_json(123_456_789_01, "GBP").to_string(),
            "123456789.01"
        );
        assert_eq!(amount_json(-20_00, "GBP").to_string(), "-20.0");
        assert_eq!(format_major(-1_05, "GBP"), "-1.05 GBP");
        assert_eq!(format_major(7, "JPY"), "7 JPY");
    }

    #[test]
    fn debits_stop_at_the_available_balance_and_credits_at_the_maximum() {
        let card = purse(100_00);
        assert!(decide(&card, Direction::Debit, 100_00, "GBP").is_ok());
        let refused = decide(&card, Direction::Debit, 100_01, "GBP").unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("more than the available balance, 100.00 GBP")
        );
        let held = Purse {
            pending: -30_00,
            ..card.clone()
        };
        assert!(decide(&held, Direction::Debit, 70_01, "GBP").is_err());
        assert!(decide(&card, Direction::Credit, 4900_00, "GBP").is_ok());
        let refused = decide(&card, Direction::Credit, 4900_01, "GBP").unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("maximum balance of 5000.00 GBP")
        );
        let refused = decide(&card, Direction::Credit, 1_00, "EUR").unwrap_err();
        assert!(refused.to_string().contains("currency is GBP, not EUR"));
    }

    #[test]
    fn the_network_answers_by_status_then_expiry_then_funds() {
        let card = purse(50_00);
        assert_eq!(authorise(&card, 50_00, false), ResponseCode::Approved);
        assert_eq!(
            authorise(&card, 50_01, false),
            ResponseCode::InsufficientFunds
        );
        assert_eq!(authorise(&card, 1, true), ResponseCode::ExpiredCard);
        let held = apply(&card, &hold(30_00)).unwrap();
        assert_eq!((held.balance, held.available()), (50_00, 20_00));
        assert_eq!(
            authorise(&held, 20_01, false),
            ResponseCode::InsufficientFunds
        );
        assert!(
            apply(&held, &hold(20_01)).is_none(),
            "the store's floor holds too"
        );
        let cleared = apply(&held, &clear(30_00, 30_00)).unwrap();
        assert_eq!((cleared.balance, cleared.pending), (20_00, 0));
        let over = apply(&held, &clear(30_00, 60_00)).unwrap();
        assert_eq!(
            (over.balance, over.pending),
            (-10_00, 0),
            "a presentment posts below zero"
        );
        let released = apply(&held, &release(30_00)).unwrap();
        assert_eq!((released.balance, released.pending), (50_00, 0));
        for (status, code) in [
            (CardStatus::Blocked, "05"),
            (CardStatus::Lost, "41"),
            (CardStatus::Stolen, "43"),
            (CardStatus::Inactive, "62"),
            (CardStatus::Closed, "62"),
            (CardStatus::Destroyed, "62"),
        ] {
            let card = Purse {
                status,
                ..purse(50_00)
            };
            assert_eq!(
                authorise(&card, 1, true).code(),
                code,
                "{status:?} comes before expiry"
            );
        }
    }

    #[test]
    fn status_decides_what_a_card_takes() {
        for (status, credit, debit) in [
            (CardStatus::Active, true, true),
            (CardStatus::Inactive, true, true),
            (CardStatus::Blocked, true, true),
            (CardStatus::Lost, true, true),
            (CardStatus::Stolen, false, true),
            (CardStatus::Destroyed, false, true),
            (CardStatus::Closed, false, false),
        ] {
            let card = Purse {
                status,
                ..purse(10_00)
            };
            assert_eq!(
                decide(&card, Direction::Credit, 1_00, "GBP").is_ok(),
                credit,
                "{status:?} credit"
            );
            assert_eq!(
                decide(&card, Direction::Debit, 1_00, "GBP").is_ok(),
                debit,
                "{status:?} debit"
            );
        }
    }
}
