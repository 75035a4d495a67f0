//! The client commands: `onboard` and the seed's single steps, over certbound-client.

// `serde_json::Value["key"]` answers `Null` for a missing key or a non-object; it never panics.
#![allow(clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use certbound_client::{ClientError, OnboardOptions, Reporter, Session, onboard};
use reqwest::Method;
use serde_json::{Value, json};

/// Prints steps as `[3/9] Name` with indented details.
pub(crate) struct Terminal;

impl Reporter for Terminal {
    fn step(&self, index: usize, total: usize, name: &str) {
        println!("[{index}/{total}] {name}");
    }

    fn detail(&self, key: &str, value: &str) {
        println!("      {key:<20} {value}");
    }
}

/// `certbound onboard`.
#[derive(Debug, clap::Args)]
pub(crate) struct OnboardArgs {
    /// The directory's public URL.
    #[arg(long, default_value = "https://localhost:8441")]
    directory: String,
    /// The authorization server's URL (issuer).
    #[arg(long, default_value = "https://localhost:8443")]
    authz: String,
    /// The Cards API's base URL.
    #[arg(long, default_value = "https://localhost:8444/api/v1")]
    cards: String,
    /// The directory operator's token file (DATA_DIR/admin.token).
    #[arg(long, default_value = "certbound-data/admin.token")]
    admin_token_file: PathBuf,
    /// The trust anchor (DATA_DIR/ca.pem); the system's roots if omitted.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Organisation name.
    #[arg(long, default_value = "Test Company 1")]
    org_name: String,
    /// Organisation country (ISO 3166 alpha-2).
    #[arg(long, default_value = "GB")]
    country: String,
    /// Application (client) name.
    #[arg(long, default_value = "Test Company App 1")]
    client_name: String,
    /// Software roles, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "programme-manager,ws")]
    roles: Vec<String>,
    /// Where the profile, keys and certificates go.
    #[arg(long, default_value = "certbound-client")]
    out: PathBuf,
    /// Where the Cards API sends the software's events (its ApiWebhookUri, an https URL).
    #[arg(long)]
    webhook: Option<String>,
}

fn read(path: &Path, what: &str) -> Result<String, ClientError> {
    std::fs::read_to_string(path).map_err(|source| {
        ClientError::Invalid(format!(
            "cannot read the {what} {}: {source}",
            path.display()
        ))
    })
}

pub(crate) async fn run_onboard(args: OnboardArgs) -> Result<(), ClientError> {
    let options = OnboardOptions {
        directory: args.directory.trim_end_matches('/').to_owned(),
        authz: args.authz.trim_end_matches('/').to_owned(),
        cards: args.cards.trim_end_matches('/').to_owned(),
        admin_token: read(&args.admin_token_file, "admin token file")?
            .trim()
            .to_owned(),
        ca_pem: args
            .ca
            .as_deref()
            .map(|path| read(path, "CA file"))
            .transpose()?,
        organisation_name: args.org_name,
        country: args.country,
        client_name: args.client_name,
        roles: args.roles,
        out: args.out,
        webhook: args.webhook,
    };
    onboard(&options, &Terminal).await?;
    println!(
        "done: try `certbound call --profile {} GET /keys`",
        options.out.display()
    );
    Ok(())
}

/// The commands that work on a profile.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum StepCommand {
    /// Raidiam Connect Well-Known and Cloudentity Well-Known.
    Discover,
    /// 2.1 RC Access Token: the directory token (directory:software).
    RcToken,
    /// 2.2 Get RC SSA: prints the SSA and its claims.
    Ssa,
    /// 2.3 Dynamic Client Registration with a fresh SSA.
    Register,
    /// Get Access Token (cached in the profile until 30 s before expiry).
    Token {
        /// Get a new one even if the cached one is still good.
        #[arg(long)]
        refresh: bool,
        /// Ask for these scopes (space separated) instead of the profile's `scope`: a new token.
        #[arg(long)]
        scope: Option<String>,
    },
    /// Call the Cards API with the transport certificate and a fresh token.
    Call {
        /// GET, POST, PUT, PATCH or DELETE.
        method: String,
        /// The whole path (/api/v1/cards), a path under the Cards API base (/cards/123456789),
        /// or a full https URL.
        path: String,
        /// A JSON body, or @FILE.
        #[arg(long)]
        data: Option<String>,
    },
    /// Write the transport key and certificate chain as PKCS#12 (the seed's note for Windows).
    Pkcs12 {
        /// The .p12 / .pfx file to write.
        #[arg(long)]
        out: PathBuf,
        /// Its password (or CERTBOUND_P12_PASSWORD).
        #[arg(long, env = "CERTBOUND_P12_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Card conveniences over `call`.
    #[command(subcommand)]
    Cards(CardsCommand),
    /// The sandbox's simulated card network: purchases on a card.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
}

/// `certbound sandbox ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SandboxCommand {
    /// Authorise a purchase: approved holds the amount; declined prints the response code.
    Authorise {
        /// The card's publicToken.
        public_token: String,
        /// The amount, a decimal such as 20.00.
        #[arg(long)]
        amount: String,
        /// ISO 4217: the card's currency.
        #[arg(long, default_value = "GBP")]
        currency: String,
        /// The merchant's name.
        #[arg(long, default_value = "certbound sandbox shop")]
        merchant: String,
        /// Its merchant category code.
        #[arg(long, default_value = "5411")]
        mcc: String,
    },
    /// Clear (present) a pending authorisation: the hold becomes a debit.
    Clear {
        /// The card's publicToken.
        public_token: String,
        /// The authorisationId.
        authorisation_id: String,
        /// Present another amount than the one authorised (a tip).
        #[arg(long)]
        amount: Option<String>,
    },
    /// Reverse a pending authorisation: the hold is released.
    Reverse {
        /// The card's publicToken.
        public_token: String,
        /// The authorisationId.
        authorisation_id: String,
    },
}

/// `certbound cards ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CardsCommand {
    /// Issue a card.
    Create {
        /// Card product.
        #[arg(long, default_value = "10001")]
        product: String,
        /// Physical, Virtual or "Master Virtual".
        #[arg(long = "type", default_value = "Virtual")]
        card_type: String,
        /// Card holder's first name.
        #[arg(long, default_value = "Ada")]
        first_name: String,
        /// Card holder's last name.
        #[arg(long, default_value = "Lovelace")]
        last_name: String,
    },
    /// Show a card.
    Get {
        /// The card's publicToken.
        public_token: String,
    },
    /// Show or change a card's status.
    Status {
        /// The card's publicToken.
        public_token: String,
        /// A status code (00, 05, 41...) or name to set.
        #[arg(long)]
        set: Option<String>,
    },
    /// Show or set a card's PIN.
    Pin {
        /// The card's publicToken.
        public_token: String,
        /// A new PIN (4 to 12 digits).
        #[arg(long)]
        set: Option<String>,
    },
    /// Show a card's CVV.
    Cvv {
        /// The card's publicToken.
        public_token: String,
    },
    /// Load money onto a card.
    Load {
        /// The card's publicToken.
        public_token: String,
        /// The amount, a decimal such as 100.00 (read exactly, never as a float).
        #[arg(long)]
        amount: String,
        /// ISO 4217: the card's currency.
        #[arg(long, default_value = "GBP")]
        currency: String,
    },
    /// Take money off a card.
    Unload {
        /// The card's publicToken.
        public_token: String,
        /// The amount.
        #[arg(long)]
        amount: String,
        /// ISO 4217: the card's currency.
        #[arg(long, default_value = "GBP")]
        currency: String,
    },
    /// Move money to another card of the organisation (both legs or neither).
    Transfer {
        /// The card that pays.
        public_token: String,
        /// The card that receives.
        #[arg(long)]
        to: String,
        /// The amount.
        #[arg(long)]
        amount: String,
        /// ISO 4217: both cards' currency.
        #[arg(long, default_value = "GBP")]
        currency: String,
    },
    /// Replace a card (lost, stolen, damaged): a new card for the same holder; the old one stops.
    Replace {
        /// The card to replace.
        public_token: String,
        /// Move the available balance to the new card.
        #[arg(long)]
        move_balance: bool,
        /// Give the new card the old one's expiry date.
        #[arg(long)]
        move_expiry_date: bool,
    },
    /// Show a card's balance.
    Balance {
        /// The card's publicToken.
        public_token: String,
    },
    /// List a card's transactions, each with the balances it left.
    Transactions {
        /// The card's publicToken.
        public_token: String,
        /// From this day (YYYYMMDD).
        #[arg(long)]
        from: Option<String>,
        /// To this day (YYYYMMDD).
        #[arg(long)]
        to: Option<String>,
    },
    /// Request cards in bulk, or show a bulk request.
    Bulk {
        /// How many cards (1 to 50).
        #[arg(long, conflicts_with = "id")]
        quantity: Option<i64>,
        /// A bulk request id to show.
        #[arg(long)]
        id: Option<String>,
        /// Card product.
        #[arg(long, default_value = "10001")]
        product: String,
    },
}

/// `call` and the `cards` conveniences: the body alone on stdout (pretty JSON, or the text as
/// sent) so that `| jq` works, the status on stderr; exit 0 for 2xx, 1 otherwise.
fn print_response(session: &Session, response: &certbound_client::Response) -> ExitCode {
    let reason = reqwest::StatusCode::from_u16(response.status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or_default();
    eprintln!("HTTP {} {reason}", response.status);
    if response.status == 403 {
        eprintln!("hint: {}", session.scope_hint());
    }
    if !response.json.is_null() {
        println!(
            "{}",
            serde_json::to_string_pretty(&response.json).unwrap_or_default()
        );
    } else if !response.text.is_empty() {
        println!("{}", certbound_client::printable(&response.text));
    }
    if (200..300).contains(&response.status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn claims(jwt: &str) -> Value {
    use base64::Engine as _;
    jwt.split('.')
        .nth(1)
        .and_then(|part| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

pub(crate) async fn run_step(
    profile: &Path,
    command: StepCommand,
) -> Result<ExitCode, ClientError> {
    let mut session = Session::open(profile)?;
    match command {
        StepCommand::Discover => {
            // The directory is certbound's (or Raidiam's); another AS needs none. Its failure
            // is reported, and the authorization server still discovered.
            if session.profile.directory.trim().is_empty() {
                println!("Raidiam Connect Well-Known: skipped (no `directory` in the profile)");
            } else {
                match session.directory_discovery().await {
                    Ok(directory) => {
                        println!("Raidiam Connect Well-Known: {}", session.profile.directory);
                        println!(
                            "      issuer               {}",
                            directory["issuer"].as_str().unwrap_or_default()
                        );
                        println!(
                            "      mTLS token endpoint  {}",
                            directory["mtls_endpoint_aliases"]["token_endpoint"]
                                .as_str()
                                .unwrap_or_default()
                        );
                    }
                    Err(error) => eprintln!(
                        "Raidiam Connect Well-Known: {}",
                        certbound_client::printable(&error.to_string())
                    ),
                }
            }
            let authz = session.authz_discovery().await?;
            println!("Cloudentity Well-Known: {}", session.profile.authz);
            for field in [
                "issuer",
                "registration_endpoint",
                "token_endpoint",
                "introspection_endpoint",
                "revocation_endpoint",
            ] {
                println!(
                    "      {field:<24} {}",
                    authz[field].as_str().unwrap_or_default()
                );
            }
            println!(
                "      auth methods             {}",
                authz["token_endpoint_auth_methods_supported"]
            );
        }
        StepCommand::RcToken => {
            let token = session.rc_token().await?;
            println!("2.1 RC Access Token");
            println!("{token}");
        }
        StepCommand::Ssa => {
            let rc = session.rc_token().await?;
            let ssa = session.ssa(&rc).await?;
            println!("2.2 Get RC SSA");
            println!("{ssa}");
            println!(
                "{}",
                serde_json::to_string_pretty(&claims(&ssa)).unwrap_or_default()
            );
        }
        StepCommand::Register => {
            let rc = session.rc_token().await?;
            let ssa = session.ssa(&rc).await?;
            let registration = session.register(&ssa).await?;
            println!("2.3 Dynamic Client Registration");
            for field in [
                "client_id",
                "scope",
                "token_endpoint_auth_method",
                "registration_client_uri",
            ] {
                println!(
                    "      {field:<28} {}",
                    registration[field].as_str().unwrap_or_default()
                );
            }
        }
        StepCommand::Token { refresh, scope } => {
            let cached = !refresh
                && scope.is_none()
                && session
                    .profile
                    .access_token_expires_at
                    .is_some_and(|expires| expires - 30 > certbound_client::now());
            let token = session.access_token_for(refresh, scope.as_deref()).await?;
            println!("Get Access Token{}", if cached { " (cached)" } else { "" });
            println!("{token}");
            let claims = claims(&token);
            println!(
                "      scope                {}",
                session
                    .profile
                    .access_token_scope
                    .as_deref()
                    .unwrap_or_default()
            );
            println!("      expires_at           {}", claims["exp"]);
            println!(
                "      cnf.x5t#S256         {}",
                claims["cnf"]["x5t#S256"].as_str().unwrap_or_default()
            );
        }
        StepCommand::Call { method, path, data } => {
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .map_err(|_| ClientError::Invalid(format!("`{method}` is not an HTTP method")))?;
            let body = match data {
                None => None,
                Some(data) => {
                    let text = match data.strip_prefix('@') {
                        Some(file) => read(Path::new(file), "data file")?,
                        None => data,
                    };
                    Some(serde_json::from_str::<Value>(&text).map_err(|error| {
                        ClientError::Invalid(format!("--data is not JSON: {error}"))
                    })?)
                }
            };
            let response = session.call(method, &path, body.as_ref()).await?;
            return Ok(print_response(&session, &response));
        }
        StepCommand::Pkcs12 { out, password } => {
            if password.is_empty() {
                return Err(ClientError::Invalid(
                    "give the PKCS#12 file a password: --password or CERTBOUND_P12_PASSWORD".into(),
                ));
            }
            let certificate = session
                .profile
                .transport_certificate
                .clone()
                .unwrap_or_else(|| "transport.pem".into());
            let key = session
                .profile
                .transport_key
                .clone()
                .unwrap_or_else(|| "transport.key".into());
            let chain = read(&profile.join(certificate), "transport certificate")?;
            let key = read(&profile.join(key), "transport key")?;
            let bytes = certbound_client::pkcs12(&key, &chain, &password)?;
            // It holds the transport private key: owner-only, like every key file.
            certbound_client::write_private(&out, &bytes)?;
            println!(
                "wrote {} (AES-256 / PBES2, HMAC-SHA256): openssl pkcs12 -in {} -info",
                out.display(),
                out.display()
            );
        }
        StepCommand::Cards(command) => return cards(&mut session, command).await,
        StepCommand::Sandbox(command) => return sandbox(&mut session, command).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn cards(session: &mut Session, command: CardsCommand) -> Result<ExitCode, ClientError> {
    let response = match command {
        CardsCommand::Create {
            product,
            card_type,
            first_name,
            last_name,
        } => {
            let body = json!({
                "cardType": card_type, "cardProduct": product, "customerReference": format!("cli-{}", certbound_client::now()),
                "cardHolder": {"firstName": first_name, "lastName": last_name, "dateOfBirth": "1990-12-10"},
                "address": {"addressLine1": "1 High Street", "city": "London", "postCode": "EC1A 1BB", "country": "GBR"},
            });
            session.call(Method::POST, "/cards", Some(&body)).await?
        }
        CardsCommand::Get { public_token } => {
            session
                .call(Method::GET, &format!("/cards/{public_token}"), None)
                .await?
        }
        CardsCommand::Status {
            public_token,
            set: None,
        } => {
            session
                .call(Method::GET, &format!("/cards/{public_token}/status"), None)
                .await?
        }
        CardsCommand::Status {
            public_token,
            set: Some(status),
        } => {
            let body = if status.bytes().all(|b| b.is_ascii_digit()) {
                json!({"cardStatusCode": status})
            } else {
                json!({"status": status})
            };
            session
                .call(
                    Method::PUT,
                    &format!("/cards/{public_token}/status"),
                    Some(&body),
                )
                .await?
        }
        CardsCommand::Pin {
            public_token,
            set: None,
        } => {
            session
                .call(Method::GET, &format!("/cards/{public_token}/pin"), None)
                .await?
        }
        CardsCommand::Pin {
            public_token,
            set: Some(pin),
        } => {
            session
                .call(
                    Method::POST,
                    &format!("/cards/{public_token}/pin"),
                    Some(&json!({"pin": pin})),
                )
                .await?
        }
        CardsCommand::Cvv { public_token } => {
            session
                .call(Method::GET, &format!("/cards/{public_token}/cvv"), None)
                .await?
        }
        CardsCommand::Bulk {
            quantity: Some(quantity),
            product,
            ..
        } => {
            let body = json!({"cardProduct": product, "cardType": "Virtual", "quantity": quantity});
            session
                .call(Method::POST, "/cards/bulk", Some(&body))
                .await?
        }
        CardsCommand::Bulk { id: Some(id), .. } => {
            session
                .call(
                    Method::GET,
                    &format!("/cards/bulk?bulkCardRequestId={id}"),
                    None,
                )
                .await?
        }
        CardsCommand::Bulk { .. } => {
            return Err(ClientError::Invalid(
                "give --quantity N to request cards, or --id ID to show a request".into(),
            ));
        }
        CardsCommand::Load {
            public_token,
            amount,
            currency,
        } => {
            post_transaction(session, &public_token, json!({"transactionType": "Load", "amount": amount, "currencyCode": currency})).await?
        }
        CardsCommand::Unload {
            public_token,
            amount,
            currency,
        } => {
            post_transaction(session, &public_token, json!({"transactionType": "Unload", "amount": amount, "currencyCode": currency})).await?
        }
        CardsCommand::Transfer {
            public_token,
            to,
            amount,
            currency,
        } => {
            post_transaction(session, &public_token, json!({"transactionType": "TransferFunds", "amount": amount, "currencyCode": currency, "toPublicToken": to})).await?
        }
        CardsCommand::Replace {
            public_token,
            move_balance,
            move_expiry_date,
        } => {
            let body = json!({"moveBalance": move_balance, "moveExpiryDate": move_expiry_date});
            session
                .call(
                    Method::POST,
                    &format!("/cards/{public_token}/replace"),
                    Some(&body),
                )
                .await?
        }
        CardsCommand::Balance { public_token } => {
            session
                .call(Method::GET, &format!("/cards/{public_token}/balance"), None)
                .await?
        }
        CardsCommand::Transactions {
            public_token,
            from,
            to,
        } => {
            let mut query = Vec::new();
            if let Some(from) = from {
                query.push(format!("fromDate={from}"));
            }
            if let Some(to) = to {
                query.push(format!("toDate={to}"));
            }
            let query = if query.is_empty() {
                String::new()
            } else {
                format!("?{}", query.join("&"))
            };
            session
                .call(
                    Method::GET,
                    &format!("/cards/{public_token}/transactions{query}"),
                    None,
                )
                .await?
        }
    };
    Ok(print_response(session, &response))
}

/// `POST /cards/{publicToken}/transactions`.
async fn post_transaction(
    session: &mut Session,
    public_token: &str,
    body: serde_json::Value,
) -> Result<certbound_client::Response, ClientError> {
    session
        .call(
            Method::POST,
            &format!("/cards/{public_token}/transactions"),
            Some(&body),
        )
        .await
}

async fn sandbox(session: &mut Session, command: SandboxCommand) -> Result<ExitCode, ClientError> {
    let response = match command {
        SandboxCommand::Authorise {
            public_token,
            amount,
            currency,
            merchant,
            mcc,
        } => {
            let body = json!({"amount": amount, "currencyCode": currency, "merchant": {"name": merchant, "mcc": mcc}});
            session
                .call(
                    Method::POST,
                    &format!("/sandbox/cards/{public_token}/authorisations"),
                    Some(&body),
                )
                .await?
        }
        SandboxCommand::Clear {
            public_token,
            authorisation_id,
            amount,
        } => {
            let body = amount.map(|amount| json!({"amount": amount}));
            session
                .call(
                    Method::POST,
                    &format!(
                        "/sandbox/cards/{public_token}/authorisations/{authorisation_id}/clear"
                    ),
                    body.as_ref(),
                )
                .await?
        }
        SandboxCommand::Reverse {
            public_token,
            authorisation_id,
        } => {
            session
                .call(
                    Method::POST,
                    &format!(
                        "/sandbox/cards/{public_token}/authorisations/{authorisation_id}/reverse"
                    ),
                    None,
                )
                .await?
        }
    };
    Ok(print_response(session, &response))
}
