//! The Cards API's data: requests as the Thredd API names them (camelCase, read in any case by
//! [`crate::body`]; unknown fields refused), the status code table, card products and PAN generation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::CardsError;

/// `cardType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CardType {
    /// A virtual card that issues other virtual cards.
    #[serde(rename = "Master Virtual", alias = "MasterVirtual")]
    MasterVirtual,
    /// A plastic card: may have fulfilment details.
    Physical,
    /// A card with no plastic.
    Virtual,
}

/// `cardHolder`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CardHolder {
    /// Mr, Ms...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// `YYYY-MM-DD`.
    pub date_of_birth: String,
}

/// `address`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Address {
    /// First line.
    pub address_line1: String,
    /// Second line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line2: Option<String>,
    /// City.
    pub city: String,
    /// County.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub county: Option<String>,
    /// Post code.
    pub post_code: String,
    /// ISO 3166-1 alpha-3.
    pub country: String,
}

/// `fulfilment` (physical cards only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fulfilment {
    /// Where to send the plastic; the card holder's address if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    /// Delivery method (e.g. `Standard`, `Courier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_method: Option<String>,
    /// Name on the carrier letter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier_name: Option<String>,
}

/// `POST /cards`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCard {
    /// Physical, Virtual or Master Virtual.
    pub card_type: CardType,
    /// A configured product (`10001`...): a number, as Thredd documents it, or a numeric string.
    #[serde(deserialize_with = "crate::body::product_code")]
    pub card_product: String,
    /// The issuer's own reference.
    pub customer_reference: String,
    /// Who the card is for.
    pub card_holder: CardHolder,
    /// Where they live.
    pub address: Address,
    /// Physical only.
    #[serde(default)]
    pub fulfilment: Option<Fulfilment>,
    /// Active at once (status 00) or inactive until activated (02). Default true.
    #[serde(default)]
    pub activate_now: Option<bool>,
    /// Card design.
    #[serde(default)]
    pub design_id: Option<String>,
    /// `YYYY-MM-DD`; default the end of the month three years ahead.
    #[serde(default)]
    pub expiry_date: Option<String>,
}

/// `PATCH /cards/{publicToken}`: any subset.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateCard {
    /// New reference.
    #[serde(default)]
    pub customer_reference: Option<String>,
    /// New holder details.
    #[serde(default)]
    pub card_holder: Option<CardHolder>,
    /// New address.
    #[serde(default)]
    pub address: Option<Address>,
    /// New fulfilment (physical only: 422 otherwise).
    #[serde(default)]
    pub fulfilment: Option<Fulfilment>,
    /// New design.
    #[serde(default)]
    pub design_id: Option<String>,
}

/// `PUT /cards/{publicToken}/status`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeStatus {
    /// Two-character code.
    #[serde(default)]
    pub card_status_code: Option<String>,
    /// Or its name.
    #[serde(default)]
    pub status: Option<String>,
    /// Who changed it; the client by default.
    #[serde(default)]
    pub updated_by: Option<String>,
    /// Why.
    #[serde(default)]
    pub description: Option<String>,
}

/// `POST /cards/{publicToken}/pin`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPin {
    /// 4 to 12 digits.
    pub pin: certbound_trust::Secret,
}

/// `POST /cards/{publicToken}/cvv/status`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvvStatus {
    /// `Blocked` or `Unblocked`.
    pub status: String,
}

/// `POST /cards/{publicToken}/encrypted`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptedRequest {
    /// base64(RSA-OAEP-256(cards encryption key, 32-byte AES key)).
    pub key: String,
}

/// `POST /cards/bulk`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkRequest {
    /// A configured product: a number or a numeric string.
    #[serde(deserialize_with = "crate::body::product_code")]
    pub card_product: String,
    /// The type of every card.
    pub card_type: CardType,
    /// 1 to 50.
    pub quantity: i64,
}

/// `POST /cards/{publicToken}/transactions`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostTransaction {
    /// Load, Unload, TransferFunds, BalanceAdjustment or Fee.
    pub transaction_type: crate::ledger::TransactionType,
    /// A decimal number (or string) in the currency's units; negative only for a
    /// BalanceAdjustment that debits.
    pub amount: serde_json::Value,
    /// ISO 4217: the card's currency.
    pub currency_code: String,
    /// TransferFunds: the card that receives.
    #[serde(default)]
    pub to_public_token: Option<String>,
    /// A fee charged to the card with a Load, Unload or TransferFunds, in the same act.
    #[serde(default)]
    pub fee_amount: Option<serde_json::Value>,
    /// What the fee is for.
    #[serde(default)]
    pub fee_type: Option<String>,
    /// Who asked for it (kept as the line's note).
    #[serde(default)]
    pub user: Option<String>,
    /// The line's description.
    #[serde(default)]
    pub description: Option<String>,
}

/// `POST /sandbox/cards/{publicToken}/authorisations`: a purchase through the simulated network.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authorise {
    /// A positive decimal number (or string) in the currency's units.
    pub amount: serde_json::Value,
    /// ISO 4217: the card's currency (the sandbox converts nothing).
    pub currency_code: String,
    /// Where the card is used.
    #[serde(default)]
    pub merchant: Option<Merchant>,
}

/// `POST .../authorisations/{id}/clear` (the body is optional): a presentment of another amount
/// than the one authorised (a tip, a fuel pump's final amount).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Clear {
    /// The amount presented, in the authorisation's currency; the authorised amount if absent.
    #[serde(default)]
    pub amount: Option<serde_json::Value>,
}

/// The merchant of an authorisation.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Merchant {
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Merchant category code: 4 digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcc: Option<String>,
    /// ISO 3166-1 alpha-3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl Merchant {
    /// Refuses what a network would not carry.
    pub fn check(&self) -> Result<(), CardsError> {
        if let Some(name) = &self.name
            && (name.trim().is_empty() || name.chars().count() > 100)
        {
            return Err(CardsError::field(
                "merchant.name",
                "merchant.name must have 1 to 100 characters",
            ));
        }
        if let Some(mcc) = &self.mcc
            && !(mcc.len() == 4 && mcc.bytes().all(|byte| byte.is_ascii_digit()))
        {
            return Err(CardsError::field(
                "merchant.mcc",
                "merchant.mcc must be a merchant category code: 4 digits, such as 5411",
            ));
        }
        if let Some(country) = &self.country
            && !(country.len() == 3 && country.bytes().all(|byte| byte.is_ascii_uppercase()))
        {
            return Err(CardsError::field(
                "merchant.country",
                "merchant.country must be an ISO 3166-1 alpha-3 code such as GBR",
            ));
        }
        Ok(())
    }
}

/// `POST /cards/{publicToken}/replace` (the body is optional).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplaceCard {
    /// Move the available balance to the new card, in the same act (default false).
    #[serde(default)]
    pub move_balance: Option<bool>,
    /// Give the new card the old one's expiry date (default false: a new one).
    #[serde(default)]
    pub move_expiry_date: Option<bool>,
    /// The new card's expiry month, `YYYY-MM` (the last day of it).
    #[serde(default)]
    pub expiry_date: Option<String>,
}

/// What `POST /cards/{publicToken}/renew` does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum RenewStep {
    /// A new PAN and CVV, the same expiry (a card moved to a new plastic series).
    Migrate,
    /// A new expiry date and CVV, the same PAN (the default).
    #[default]
    Renew,
    /// A new CVV alone: the same PAN and expiry.
    RenewWithSameExpiry,
}

/// `POST /cards/{publicToken}/renew` (the body is optional).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenewCard {
    /// Renew (default), Migrate or RenewWithSameExpiry.
    #[serde(default)]
    pub renew_step: Option<RenewStep>,
}

/// `PATCH /cards/{publicToken}/card-type`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConvertCard {
    /// `Physical`: the only conversion there is.
    pub card_type: CardType,
    /// Keep the expiry date (the default unless newExpiryDate is given).
    #[serde(default)]
    pub move_expiry_date: Option<bool>,
    /// A new expiry date, `YYYY-MM-DD`, in the future.
    #[serde(default)]
    pub new_expiry_date: Option<String>,
}

/// A card's status: Thredd's two-character codes. A card starts `00` (or `02` with
/// `activateNow: false`); a terminal status never changes again and the card accepts no
/// changes (409).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardStatus {
    /// `00`.
    Active,
    /// `05`.
    Blocked,
    /// `46`.
    Closed,
    /// `83`.
    Destroyed,
    /// `02`: issued, awaiting activation.
    Inactive,
    /// `41`.
    Lost,
    /// `43`.
    Stolen,
}

impl CardStatus {
    /// Every status, in code order (the order error messages list them in).
    pub const ALL: [Self; 7] = [
        Self::Active,
        Self::Inactive,
        Self::Blocked,
        Self::Lost,
        Self::Stolen,
        Self::Closed,
        Self::Destroyed,
    ];

    /// The two-character code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Active => "00",
            Self::Blocked => "05",
            Self::Closed => "46",
            Self::Destroyed => "83",
            Self::Inactive => "02",
            Self::Lost => "41",
            Self::Stolen => "43",
        }
    }

    /// Its name on the wire (`status`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Blocked => "Blocked",
            Self::Closed => "Closed",
            Self::Destroyed => "Destroyed",
            Self::Inactive => "Inactive",
            Self::Lost => "Lost",
            Self::Stolen => "Stolen",
        }
    }

    /// What it means (`cardStatusDescription`).
    pub fn description(self) -> &'static str {
        match self {
            Self::Active => "Card is active",
            Self::Blocked => "Temporarily blocked (do not honour)",
            Self::Closed => "Account closed",
            Self::Destroyed => "Card destroyed",
            Self::Inactive => "Issued, awaiting activation",
            Self::Lost => "Reported lost",
            Self::Stolen => "Reported stolen",
        }
    }

    /// No way back, and no other change either.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Closed | Self::Destroyed | Self::Lost | Self::Stolen
        )
    }

    /// The status with this code or name (names in any case).
    pub fn parse(code_or_name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| {
            status.code() == code_or_name || status.name().eq_ignore_ascii_case(code_or_name)
        })
    }

    /// Whether a card may move from `self` to `to`.
    pub fn transition(self, to: Self) -> Result<(), CardsError> {
        self.accepts_changes()?;
        if to == Self::Inactive && self != Self::Inactive {
            return Err(CardsError::Conflict(
                "a card that was activated cannot become inactive again".into(),
            ));
        }
        Ok(())
    }

    /// Refuses every change to a card in a terminal status (409).
    pub fn accepts_changes(self) -> Result<(), CardsError> {
        if self.is_terminal() {
            return Err(CardsError::Conflict(format!(
                "the card is {} ({}), a terminal status: it accepts no further changes",
                self.name(),
                self.code()
            )));
        }
        Ok(())
    }
}

/// A card's `publicToken`: 9 digits, not starting with 0. Anything else names no card.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PublicToken(String);

impl PublicToken {
    /// The token in `text`, if it has the form of one.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 9 && text.bytes().all(|byte| byte.is_ascii_digit()))
            .then(|| Self(text.to_owned()))
    }

    /// A new random token.
    pub fn generate() -> Result<Self, CardsError> {
        let digits = random_digits(9)?;
        Ok(Self(match digits.strip_prefix('0') {
            Some(rest) => format!("1{rest}"),
            None => digits,
        }))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PublicToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A card product: BIN and currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    /// Product code.
    pub code: String,
    /// The six-digit BIN PANs start with.
    pub bin: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// The most a card's balance may be, minor units.
    pub max_balance: i64,
}

/// The default products `10001`, `10002`, `10003`.
pub fn default_products() -> Vec<Product> {
    [
        ("10001", "459999", "GBP"),
        ("10002", "535522", "EUR"),
        ("10003", "400000", "USD"),
    ]
    .into_iter()
    .map(|(code, bin, currency)| Product {
        code: code.into(),
        bin: bin.into(),
        currency: currency.into(),
        max_balance: crate::ledger::DEFAULT_MAX_BALANCE * crate::ledger::scale(currency),
    })
    .collect()
}

/// The Luhn check digit of `digits`.
pub fn luhn_check_digit(digits: &str) -> u32 {
    let sum: u32 = digits
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// Whether a number passes the Luhn check.
pub fn luhn_valid(number: &str) -> bool {
    match number
        .len()
        .checked_sub(1)
        .and_then(|last| number.get(..last).zip(number.get(last..)))
    {
        Some((body, check)) => check.parse::<u32>().ok() == Some(luhn_check_digit(body)),
        None => false,
    }
}

/// `count` random decimal digits.
pub fn random_digits(count: usize) -> Result<String, CardsError> {
    let mut bytes = vec![0u8; count * 2];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CardsError::Internal("no randomness".into()))?;
    // Two bytes per digit, reduced mod 10: a bias of under 0.01 %.
    Ok(bytes
        .chunks(2)
        .map(|pair| {
            let value = u16::from_be_bytes([
                pair.first().copied().unwrap_or_default(),
                pair.get(1).copied().unwrap_or_default(),
            ]);
            char::from(b'0' + (value % 10) as u8)
        })
        .collect())
}

/// A 16-digit Luhn-valid PAN from the product's BIN.
pub fn new_pan(product: &Product) -> Result<String, CardsError> {
    let body = format!("{}{}", product.bin, random_digits(15 - product.bin.len())?);
    Ok(format!("{body}{}", luhn_check_digit(&body)))
}

/// First six and last four digits.
pub fn masked(pan: &str) -> String {
    let first = pan.get(..6).unwrap_or_default();
    let last = pan.get(pan.len().saturating_sub(4)..).unwrap_or_default();
    format!("{first}{}{last}", "*".repeat(pan.len().saturating_sub(10)))
}

/// Collects field errors.
#[derive(Debug, Default)]
pub struct Errors(BTreeMap<String, Vec<String>>);

impl Errors {
    /// Adds an error for `field`.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_default()
            .push(message.into());
    }

    /// Ok if empty.
    pub fn finish(self) -> Result<(), CardsError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(CardsError::Validation(self.0))
        }
    }
}

fn is_date(value: &str) -> bool {
    time::Date::parse(
        value,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .is_ok()
}

/// Checks a card holder.
pub fn check_card_holder(holder: &CardHolder, prefix: &str, errors: &mut Errors) {
    for (field, value, max) in [
        ("firstName", &holder.first_name, 50),
        ("lastName", &holder.last_name, 50),
    ] {
        if value.trim().is_empty() || value.chars().count() > max {
            errors.add(
                &format!("{prefix}.{field}"),
                format!("{field} is required, at most {max} characters"),
            );
        }
    }
    if !is_date(&holder.date_of_birth) {
        errors.add(
            &format!("{prefix}.dateOfBirth"),
            "dateOfBirth must be a date, YYYY-MM-DD",
        );
    }
}

/// Checks an address.
pub fn check_address(address: &Address, prefix: &str, errors: &mut Errors) {
    for (field, value) in [
        ("addressLine1", &address.address_line1),
        ("city", &address.city),
        ("postCode", &address.post_code),
    ] {
        if value.trim().is_empty() || value.chars().count() > 100 {
            errors.add(
                &format!("{prefix}.{field}"),
                format!("{field} is required, at most 100 characters"),
            );
        }
    }
    if !(address.country.len() == 3 && address.country.bytes().all(|b| b.is_ascii_uppercase())) {
        errors.add(
            &format!("{prefix}.country"),
            "country must be an ISO 3166-1 alpha-3 code such as GBR",
        );
    }
}

/// Checks a PIN: 4 to 12 digits.
pub fn check_pin(pin: &certbound_trust::Secret) -> Result<(), CardsError> {
    let pin = pin.expose();
    if (4..=12).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(CardsError::field("pin", "pin must be 4 to 12 digits"))
    }
}

/// Checks an expiry date given at creation: a date in the future.
pub fn check_expiry(value: &str, today: &str, errors: &mut Errors) {
    if !is_date(value) || value <= today {
        errors.add("expiryDate", "expiryDate must be a future date, YYYY-MM-DD");
    }
}

impl CreateCard {
    /// Every field rule at once (400 naming each field), then the rules across fields (422).
    /// The product the card is made from, when all hold.
    pub fn check<'a>(
        &self,
        products: &'a [Product],
        today: &str,
    ) -> Result<&'a Product, CardsError> {
        let mut errors = Errors::default();
        let product = products
            .iter()
            .find(|product| product.code == self.card_product);
        if product.is_none() {
            let known: Vec<&str> = products
                .iter()
                .map(|product| product.code.as_str())
                .collect();
            errors.add(
                "cardProduct",
                format!(
                    "unknown card product; the products are {}",
                    known.join(", ")
                ),
            );
        }
        if self.customer_reference.trim().is_empty() || self.customer_reference.chars().count() > 50
        {
            errors.add(
                "customerReference",
                "customerReference is required, at most 50 characters",
            );
        }
        check_card_holder(&self.card_holder, "cardHolder", &mut errors);
        check_address(&self.address, "address", &mut errors);
        if let Some(address) = self
            .fulfilment
            .as_ref()
            .and_then(|fulfilment| fulfilment.address.as_ref())
        {
            check_address(address, "fulfilment.address", &mut errors);
        }
        if let Some(expiry) = &self.expiry_date {
            check_expiry(expiry, today, &mut errors);
        }
        errors.finish()?;
        if self.fulfilment.is_some() && self.card_type != CardType::Physical {
            return Err(CardsError::Unprocessable {
                field: "fulfilment".into(),
                message: "fulfilment applies to physical cards only".into(),
            });
        }
        product.ok_or_else(|| CardsError::field("cardProduct", "unknown card product"))
    }

    /// The name embossed on the card: first and last name, upper case, at most 26 characters.
    pub fn emboss_name(&self) -> String {
        format!(
            "{} {}",
            self.card_holder.first_name.trim(),
            self.card_holder.last_name.trim()
        )
        .to_uppercase()
        .chars()
        .take(26)
        .collect()
    }
}

impl UpdateCard {
    /// Every field rule at once (400 naming each field).
    pub fn check(&self) -> Result<(), CardsError> {
        let mut errors = Errors::default();
        if let Some(reference) = &self.customer_reference
            && (reference.trim().is_empty() || reference.chars().count() > 50)
        {
            errors.add(
                "customerReference",
                "customerReference must be 1 to 50 characters",
            );
        }
        if let Some(holder) = &self.card_holder {
            check_card_holder(holder, "cardHolder", &mut errors);
        }
        if let Some(address) = &self.address {
            check_address(address, "address", &mut errors);
        }
        errors.finish()
    }
}

impl UpdateCard {
    /// Applies the change to a card's stored details. 422 for `fulfilment` on a virtual card.
    pub fn apply(&self, details: &mut serde_json::Value) -> Result<(), CardsError> {
        if self.fulfilment.is_some()
            && details.get("cardType") != Some(&serde_json::json!(CardType::Physical))
        {
            return Err(CardsError::Unprocessable {
                field: "fulfilment".into(),
                message: "fulfilment applies to physical cards only".into(),
            });
        }
        if let serde_json::Value::Object(map) = details {
            let mut set = |key: &str, value: Option<serde_json::Value>| {
                if let Some(value) = value {
                    map.insert(key.to_owned(), value);
                }
            };
            set(
                "customerReference",
                self.customer_reference.clone().map(serde_json::Value::from),
            );
            set(
                "cardHolder",
                self.card_holder
                    .as_ref()
                    .map(|holder| serde_json::json!(holder)),
            );
            set(
                "address",
                self.address
                    .as_ref()
                    .map(|address| serde_json::json!(address)),
            );
            set(
                "fulfilment",
                self.fulfilment
                    .as_ref()
                    .map(|fulfilment| serde_json::json!(fulfilment)),
            );
            set(
                "designId",
                self.design_id.clone().map(serde_json::Value::from),
            );
        }
        Ok(())
    }
}

impl ChangeStatus {
    /// The status asked for, by code or name (both must agree when both are given).
    pub fn wanted(&self) -> Result<CardStatus, CardsError> {
        let wanted = self
            .card_status_code
            .as_deref()
            .or(self.status.as_deref())
            .ok_or_else(|| {
                CardsError::field(
                    "cardStatusCode",
                    "give cardStatusCode (e.g. \"41\") or status (e.g. \"Lost\")",
                )
            })?;
        let to = CardStatus::parse(wanted).ok_or_else(|| {
            let known: Vec<String> = CardStatus::ALL
                .iter()
                .map(|status| format!("{} {}", status.code(), status.name()))
                .collect();
            CardsError::field(
                "cardStatusCode",
                format!("unknown status; the statuses are {}", known.join(", ")),
            )
        })?;
        if let (Some(code), Some(name)) = (&self.card_status_code, &self.status)
            && CardStatus::parse(name) != Some(to)
        {
            return Err(CardsError::field(
                "status",
                format!("status `{name}` does not match cardStatusCode `{code}`"),
            ));
        }
        Ok(to)
    }
}

impl CvvStatus {
    /// Whether CVV lookups are to be blocked.
    pub fn blocked(&self) -> Result<bool, CardsError> {
        match self.status.as_str() {
            "Blocked" => Ok(true),
            "Unblocked" => Ok(false),
            _ => Err(CardsError::field(
                "status",
                "status must be Blocked or Unblocked",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pans_are_luhn_valid_with_the_bin() {
        for product in default_products() {
            let pan = new_pan(&product).unwrap();
            assert_eq!(pan.len(), 16);
            assert!(pan.starts_with(&product.bin));
            assert!(luhn_valid(&pan), "{pan}");
        }
        assert!(luhn_valid("4539578763621486"));
        assert!(!luhn_valid("4539578763621487"));
        assert_eq!(masked("4599991234567890"), "459999******7890");
    }

    #[test]
    fn terminal_states_do_not_come_back() {
        use CardStatus::{Active, Blocked, Inactive, Lost};
        let cases = [
            (Active, Lost, true),
            (Lost, Active, false),
            (Lost, Blocked, false),
            (Active, Inactive, false),
            (Inactive, Active, true),
            (Blocked, Active, true),
        ];
        for (from, to, allowed) in cases {
            let outcome = from.transition(to);
            assert_eq!(outcome.is_ok(), allowed, "{from:?} -> {to:?}");
            if !allowed {
                assert!(matches!(outcome, Err(CardsError::Conflict(_))));
            }
        }
        for status in CardStatus::ALL {
            assert_eq!(CardStatus::parse(status.code()), Some(status));
            assert_eq!(
                CardStatus::parse(&status.name().to_lowercase()),
                Some(status)
            );
            assert_eq!(status.accepts_changes().is_ok(), !status.is_terminal());
        }
        assert_eq!(CardStatus::parse("99"), None);
    }

    #[test]
    fn pins_are_four_to_twelve_digits() {
        let pin = |text: &str| certbound_trust::Secret::new(text.into());
        assert!(check_pin(&pin("1234")).is_ok());
        assert!(check_pin(&pin("123456789012")).is_ok());
        assert!(check_pin(&pin("123")).is_err());
        assert!(check_pin(&pin("1234567890123")).is_err());
        assert!(check_pin(&pin("12a4")).is_err());
        // A request holding a PIN prints nothing of it.
        let request: SetPin = serde_json::from_str(r#"{"pin":"4921"}"#).unwrap();
        assert!(!format!("{request:?}").contains("4921"));
    }

    #[test]
    fn public_tokens_are_nine_digits() {
        for _ in 0..50 {
            let token = PublicToken::generate().unwrap();
            assert_eq!(token.as_str().len(), 9);
            assert!(!token.as_str().starts_with('0'));
            assert_eq!(PublicToken::parse(token.as_str()), Some(token));
        }
        for bad in ["12345678", "1234567890", "12345678a", "../../etc", ""] {
            assert_eq!(PublicToken::parse(bad), None, "{bad}");
        }
    }
}
