//! The records the directory keeps and the store traits over them. Bodies of organisations and
//! software statements are the directory's JSON, kept whole: the store does not interpret them.

use async_trait::async_trait;

use crate::StoreError;

/// An organisation: its id and its JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrganisationRecord {
    /// OrganisationId (UUID).
    pub id: String,
    /// The directory's JSON.
    pub body: String,
    /// Creation time.
    pub created_at: i64,
}

/// A software statement: its id, owner and JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoftwareStatementRecord {
    /// SoftwareStatementId (UUID).
    pub id: String,
    /// Owning OrganisationId.
    pub organisation_id: String,
    /// The directory's JSON.
    pub body: String,
    /// Creation time.
    pub created_at: i64,
}

/// An issued certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRecord {
    /// CertificateId (UUID).
    pub id: String,
    /// Owning organisation.
    pub organisation_id: String,
    /// Owning software statement; `None` for organisation certificates.
    pub software_statement_id: Option<String>,
    /// `transport`, `signing` or `encryption`.
    pub certificate_type: String,
    /// RFC 7638 thumbprint of the key.
    pub key_id: String,
    /// `x5t#S256` of the certificate.
    pub thumbprint: String,
    /// Serial, lowercase hex.
    pub serial_hex: String,
    /// Leaf then issuing CA, PEM.
    pub chain_pem: String,
    /// Validity start.
    pub not_before: i64,
    /// Validity end.
    pub not_after: i64,
    /// When issued.
    pub created_at: i64,
    /// When revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// A directory access token, stored by the SHA-256 of its value: the value itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessTokenRecord {
    /// base64url SHA-256 of the token value.
    pub token_hash: String,
    /// The issuer that issued it.
    pub issuer: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The client's organisation.
    pub organisation_id: String,
    /// The client's software statement.
    pub software_statement_id: String,
    /// `x5t#S256` of the certificate the token is bound to.
    pub thumbprint: String,
    /// Granted scope, space separated.
    pub scope: String,
    /// Issue time.
    pub issued_at: i64,
    /// Expiry.
    pub expires_at: i64,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
}

/// A key of the stack itself, sealed under the master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMaterialRecord {
    /// Name (`ca.root`, `ca.issuing`, `ssa.signer`, ...).
    pub name: String,
    /// The sealed private key.
    pub sealed: String,
    /// The key's certificate chain, PEM, if it has one.
    pub certificate_pem: Option<String>,
    /// Creation time.
    pub created_at: i64,
}

/// What the directory stores.
#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// Inserts a new organisation.
    async fn insert_organisation(&self, record: &OrganisationRecord) -> Result<(), StoreError>;
    /// One organisation.
    async fn organisation(&self, id: &str) -> Result<Option<OrganisationRecord>, StoreError>;
    /// Every organisation, oldest first.
    async fn organisations(&self) -> Result<Vec<OrganisationRecord>, StoreError>;
    /// Inserts a new software statement.
    async fn insert_software_statement(
        &self,
        record: &SoftwareStatementRecord,
    ) -> Result<(), StoreError>;
    /// One software statement.
    async fn software_statement(
        &self,
        id: &str,
    ) -> Result<Option<SoftwareStatementRecord>, StoreError>;
    /// The software statements of an organisation, oldest first.
    async fn software_statements(
        &self,
        organisation_id: &str,
    ) -> Result<Vec<SoftwareStatementRecord>, StoreError>;
    /// Inserts an issued certificate.
    async fn insert_certificate(&self, record: &CertificateRecord) -> Result<(), StoreError>;
    /// One certificate.
    async fn certificate(&self, id: &str) -> Result<Option<CertificateRecord>, StoreError>;
    /// The certificate with this `x5t#S256`.
    async fn certificate_by_thumbprint(
        &self,
        thumbprint: &str,
    ) -> Result<Option<CertificateRecord>, StoreError>;
    /// Every certificate of the key with this RFC 7638 thumbprint (`kid`): a key resubmitted in a
    /// new CSR has more than one.
    async fn certificates_by_key_id(
        &self,
        key_id: &str,
    ) -> Result<Vec<CertificateRecord>, StoreError>;
    /// The certificates of an organisation (`software_statement_id: None`) or of a software statement.
    async fn certificates(
        &self,
        organisation_id: &str,
        software_statement_id: Option<&str>,
    ) -> Result<Vec<CertificateRecord>, StoreError>;
    /// Marks a certificate revoked; `false` if it was already revoked or does not exist.
    async fn revoke_certificate(&self, id: &str, now: i64) -> Result<bool, StoreError>;
    /// Every revoked certificate, for the CRL.
    async fn revoked_certificates(&self) -> Result<Vec<CertificateRecord>, StoreError>;
    /// Stores an issued access token.
    async fn insert_access_token(&self, record: &AccessTokenRecord) -> Result<(), StoreError>;
    /// The token with this hash.
    async fn access_token(&self, token_hash: &str)
    -> Result<Option<AccessTokenRecord>, StoreError>;
    /// The next value of a named counter (CRL numbers), atomically.
    async fn next_counter(&self, name: &str) -> Result<i64, StoreError>;
}

/// The shared use-once table (step-ca's `UseToken`).
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Records `id` as used until `expires_at`. `true` the first time, `false` on every later
    /// call, at every instance sharing the database.
    async fn use_once(&self, id: &str, expires_at: i64, now: i64) -> Result<bool, StoreError>;
}

/// What the store knows of an issued access token: the one question every party that honours
/// tokens (the authorization server's introspection, the Cards API) asks before it does.
#[async_trait]
pub trait TokenStandingStore: Send + Sync {
    /// The trust counter: it moves, in the same transaction, with every change to any token's
    /// standing, at any instance sharing the database.
    async fn trust_version(&self) -> Result<i64, StoreError>;
    /// Changes to a token's standing this process knows of without asking the database: those
    /// made through this very store value, and on PostgreSQL those other instances announced on
    /// the change feed. Read for free on every call, so a process sees them at once.
    fn local_changes(&self) -> u64;
    /// In one statement (the Cards API's hot path): whether the certificate the token is bound to
    /// was revoked, whether the token was revoked, and whether its very registration still
    /// exists.
    async fn token_standing(&self, token: &TokenReference<'_>)
    -> Result<TokenStanding, StoreError>;
}

/// The stack's own keys.
#[async_trait]
pub trait KeyMaterialStore: Send + Sync {
    /// The named key.
    async fn key_material(&self, name: &str) -> Result<Option<KeyMaterialRecord>, StoreError>;
    /// Inserts the key unless one of that name exists; `false` if another instance won the race.
    async fn insert_key_material(&self, record: &KeyMaterialRecord) -> Result<bool, StoreError>;
}

/// A client registered at the authorization server (RFC 7591).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRecord {
    /// `client_id` (the SSA's, URL form).
    pub client_id: String,
    /// The SSA's `software_id`: one registration per software.
    pub software_id: String,
    /// The SSA's `org_id`.
    pub organisation_id: String,
    /// The registered metadata, JSON.
    pub metadata: String,
    /// base64url SHA-256 of the registration access token (the token is never stored).
    pub registration_token_hash: String,
    /// This registration's own id (a UUID), carried by its access tokens as `rid`.
    pub registration_id: String,
    /// Registration time.
    pub created_at: i64,
    /// Last update.
    pub updated_at: i64,
}

/// A token signing key of the authorization server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key id.
    pub kid: String,
    /// The private key, sealed under the master key.
    pub sealed: String,
    /// The public JWK, JSON.
    pub public_jwk: String,
    /// Creation time.
    pub created_at: i64,
    /// From when it signs (published in the JWKS before that).
    pub activates_at: i64,
    /// When it leaves the JWKS (its last tokens have expired by then).
    pub retires_at: Option<i64>,
}

/// What identifies an access token to the store: its id, its client and registration, and the
/// certificate it is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenReference<'a> {
    /// `jti`.
    pub jti: &'a str,
    /// `client_id`.
    pub client_id: &'a str,
    /// `rid`: the registration the token was issued under.
    pub registration_id: &'a str,
    /// `cnf.x5t#S256`.
    pub thumbprint: &'a str,
}

/// Whether a presented access token may still be honoured, as far as the store knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenStanding {
    /// The directory revoked the certificate the token is bound to.
    pub certificate_revoked: bool,
    /// The token was revoked (RFC 7009).
    pub token_revoked: bool,
    /// The client is still registered.
    pub client_exists: bool,
}

/// What the authorization server stores.
#[async_trait]
pub trait AuthzStore: Send + Sync {
    /// Registers a client; `false` if its `client_id` or `software_id` is already registered.
    async fn insert_client(&self, record: &ClientRecord) -> Result<bool, StoreError>;
    /// The client with this `client_id` or `software_id`.
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;
    /// In one statement (the token endpoint's hot path): the client with this `client_id` or
    /// `software_id`, and the directory's certificate with this `x5t#S256` (the presented one).
    async fn client_and_certificate(
        &self,
        client_id: &str,
        thumbprint: &str,
    ) -> Result<(Option<ClientRecord>, Option<CertificateRecord>), StoreError>;
    /// Replaces a client's metadata; `false` if it does not exist.
    async fn update_client(
        &self,
        client_id: &str,
        metadata: &str,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Deletes a client; `false` if it did not exist.
    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError>;
    /// Stores a new token signing key.
    async fn insert_signing_key(&self, record: &SigningKeyRecord) -> Result<(), StoreError>;
    /// Every token signing key, oldest activation first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// Sets `retires_at` on keys activated before `before` that have none.
    async fn retire_signing_keys(&self, before: i64, retires_at: i64) -> Result<(), StoreError>;
    /// Records an access token as revoked until it expires.
    async fn revoke_token(
        &self,
        jti: &str,
        client_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Whether the token with this `jti` was revoked.
    async fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError>;
}

/// A card. Non-sensitive details are JSON; PAN, CVV and PIN are sealed under the master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardRecord {
    /// The 9-digit public token.
    pub public_token: String,
    /// The owning organisation (tenant).
    pub organisation_id: String,
    /// The client that created it.
    pub client_id: String,
    /// Non-sensitive details, JSON.
    pub details: String,
    /// Sealed PAN.
    pub pan_sealed: String,
    /// Sealed CVV.
    pub cvv_sealed: String,
    /// Sealed PIN, once set.
    pub pin_sealed: Option<String>,
    /// Two-character status code.
    pub status_code: String,
    /// Status metadata (updated, updatedBy, description), JSON.
    pub status_updated: String,
    /// Whether CVV lookups are blocked.
    pub cvv_blocked: bool,
    /// Creation time.
    pub created_at: i64,
    /// Last update.
    pub updated_at: i64,
    /// Bumped by every write; a write names the version it read (optimistic concurrency).
    pub version: i64,
    /// The `IdempotencyKey` claim of the request that created it, if it had one.
    pub idempotency_id: Option<String>,
    /// The settled balance, minor units (written by [`CardsStore::post`] only).
    pub balance_minor: i64,
    /// Pending holds, minor units, zero or negative (written by [`CardsStore::post`] only).
    pub pending_minor: i64,
}

/// One line of a card's transaction list: a posting or an authorisation step, with the balances
/// it left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionLine {
    /// `transactionId` (UUID).
    pub id: String,
    /// The card.
    pub public_token: String,
    /// The card's organisation.
    pub organisation_id: String,
    /// Its place in the card's list (set by the store: the card's lines are numbered 1, 2, ...).
    pub line: i64,
    /// Thredd's type code (`L`, `U`, `B`, `F`, `A`, `D`, `P`).
    pub type_code: String,
    /// Thredd's status code (`A`, `S`, `V`, `I`).
    pub status_code: String,
    /// The request's `transactionType` (or the network's step).
    pub transaction_type: String,
    /// Its effect on the card, minor units (negative for a debit or a hold).
    pub amount_minor: i64,
    /// ISO 4217.
    pub currency: String,
    /// The settled balance after it (set by the store).
    pub actual_balance: i64,
    /// The available balance after it (set by the store).
    pub available_balance: i64,
    /// What it was.
    pub description: String,
    /// The caller's note (`user`).
    pub note: Option<String>,
    /// The other line of the same act (a transfer's other leg, an authorisation's clearing).
    pub link: Option<String>,
    /// The ISO 8583 processing code.
    pub processing_code: String,
    /// The `IdempotencyKey` claim of the request that made it, if any.
    pub request_id: Option<String>,
    /// Its place in its act (0, 1, ...): with `request_id`, unique.
    pub leg: i64,
    /// When.
    pub created_at: i64,
}

/// One card's share of an act on the ledger, as the Cards API decided it: the store applies it
/// only if the card still has the status it was decided on and the limits still hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posting {
    /// The status code the decision was made on.
    pub expected_status: String,
    /// The card version the decision was made on, for a posting that must not outlive a change
    /// to the card (a credit onto a card being replaced); none to ignore the version.
    pub expected_version: Option<i64>,
    /// Added to the settled balance.
    pub balance_delta: i64,
    /// Added to the pending holds.
    pub pending_delta: i64,
    /// The least available balance (balance + pending) allowed after; none for no floor.
    pub available_floor: Option<i64>,
    /// The most settled balance allowed after; none for no ceiling.
    pub balance_ceiling: Option<i64>,
    /// The line it writes (`line` and the balances are filled in).
    pub line: TransactionLine,
}

/// An authorisation of the sandbox's card network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorisationRecord {
    /// `authorisationId` (UUID).
    pub id: String,
    /// The card.
    pub public_token: String,
    /// The card's organisation.
    pub organisation_id: String,
    /// The amount asked for, minor units.
    pub amount_minor: i64,
    /// ISO 4217.
    pub currency: String,
    /// The merchant, JSON.
    pub merchant: String,
    /// `Pending`, `Cleared`, `Reversed` or `Declined`.
    pub state: String,
    /// The ISO 8583 response code it got.
    pub response_code: String,
    /// The approval code, if approved.
    pub auth_code: Option<String>,
    /// When it was made.
    pub created_at: i64,
    /// When its state last changed.
    pub updated_at: i64,
}

/// What an act on the ledger does to an authorisation, in the same transaction as its postings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorisationChange {
    /// Records a new authorisation (approved or declined).
    Insert(AuthorisationRecord),
    /// Moves an authorisation from one state to another; the act is refused if it is no longer
    /// in `from`.
    Transition {
        /// The authorisation.
        id: String,
        /// The state it was decided on.
        from: String,
        /// Its new state.
        to: String,
        /// When.
        now: i64,
    },
}

/// A webhook notification to be written with the change it announces (the store numbers it in
/// its card's order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationDraft {
    /// `notificationId` (UUID).
    pub id: String,
    /// The card's organisation.
    pub organisation_id: String,
    /// The card.
    pub public_token: String,
    /// The software statement's `ApiWebhookUri`.
    pub url: String,
    /// `103`, `112`...
    pub event_code: String,
    /// The JSON body delivered, whole.
    pub body: String,
    /// When it was made.
    pub created_at: i64,
}

/// A webhook notification in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRecord {
    /// What was written.
    pub draft: NotificationDraft,
    /// Its place in its card's notifications (1, 2, ...).
    pub sequence: i64,
    /// `Pending`, `Delivered` or `Failed` (given up on; resend makes it `Pending` again).
    pub status: String,
    /// Deliveries tried.
    pub attempts: i64,
    /// Not before this.
    pub next_attempt_at: i64,
    /// Why the last delivery failed.
    pub last_error: Option<String>,
    /// When it was delivered.
    pub delivered_at: Option<i64>,
    /// Its first delivery attempt (since its last resend): its retry window counts from here.
    pub first_attempt_at: Option<i64>,
}

/// Builds the notifications of an act from the lines the store wrote (their balances are known
/// only then).
pub type Announce<'a> = &'a (dyn Fn(&[TransactionLine]) -> Vec<NotificationDraft> + Send + Sync);

/// What [`CardsStore::post`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Posted {
    /// Every posting applied, in one transaction: the lines written.
    Done(Vec<TransactionLine>),
    /// Nothing applied: the posting at this index no longer held (the card's status changed, or
    /// another act took the money first). Read the card and decide again.
    Refused(usize),
}

/// The first response to a write with an `IdempotencyKey`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// Tenant-scoped key id.
    pub id: String,
    /// The endpoint it was used on.
    pub endpoint: String,
    /// SHA-256 of the request body.
    pub request_hash: String,
    /// The response status; 0 while the first request is still acting (a claim).
    pub status: i64,
    /// The response body.
    pub response: String,
    /// When first used.
    pub created_at: i64,
}

/// A bulk card creation job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkJobRecord {
    /// Job id (UUID).
    pub id: String,
    /// Tenant.
    pub organisation_id: String,
    /// Creator.
    pub client_id: String,
    /// The request, JSON.
    pub request: String,
    /// Cards to create.
    pub quantity: i64,
    /// Pending, Processing, Complete or Failed.
    pub status: String,
    /// Created cards so far, JSON array.
    pub public_tokens: String,
    /// Creation time.
    pub created_at: i64,
    /// Last update.
    pub updated_at: i64,
    /// The `IdempotencyKey` claim of the request that created it, if it had one.
    pub idempotency_id: Option<String>,
}

/// What the Cards API stores.
#[async_trait]
pub trait CardsStore: Send + Sync {
    /// Inserts a card; `false` if the public token is taken.
    async fn insert_card(&self, record: &CardRecord) -> Result<bool, StoreError>;
    /// One card.
    async fn card(&self, public_token: &str) -> Result<Option<CardRecord>, StoreError>;
    /// Writes a card's mutable fields if its version is still `record.version` (and bumps it);
    /// `false` if another write came first: re-read and decide again. Never the balances.
    async fn update_card(&self, record: &CardRecord) -> Result<bool, StoreError>;
    /// Applies every posting, with its transaction line, in one transaction: all or none, at
    /// every instance sharing the database. Each posting's conditions are checked by the same
    /// statement that applies it, so concurrent acts can never take a card below its floor.
    async fn post(&self, postings: &[Posting]) -> Result<Posted, StoreError> {
        self.post_with(postings, None, None).await
    }
    /// [`CardsStore::post`], with a change to an authorisation and the act's notifications in
    /// the same transaction: a transition from a state it no longer has refuses the whole act
    /// (as [`Posted::Refused`] with the index `postings.len()`).
    async fn post_with(
        &self,
        postings: &[Posting],
        authorisation: Option<&AuthorisationChange>,
        announce: Option<Announce<'_>>,
    ) -> Result<Posted, StoreError>;
    /// [`CardsStore::update_card`], writing `notifications` in the same transaction if it
    /// applies.
    async fn update_card_announcing(
        &self,
        record: &CardRecord,
        notifications: &[NotificationDraft],
    ) -> Result<bool, StoreError>;
    /// Pending notifications due at `now` whose earlier notifications of the same card are all
    /// delivered (or given up on), oldest first, at most `limit`, none leased by a live worker.
    async fn due_notifications(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<NotificationRecord>, StoreError>;
    /// Takes a notification for delivery until `until`; `false` if another worker holds it.
    async fn lease_notification(
        &self,
        id: &str,
        lease: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Records a delivery attempt's outcome, if `lease` still holds the notification:
    /// delivered, or failed with the next attempt's time (`give_up`: `Failed`).
    async fn notification_attempted(
        &self,
        id: &str,
        lease: &str,
        now: i64,
        outcome: Result<(), (String, i64, bool)>,
    ) -> Result<bool, StoreError>;
    /// An organisation's notifications not delivered (pending or given up on), oldest first.
    async fn undelivered_notifications(
        &self,
        organisation_id: &str,
    ) -> Result<Vec<NotificationRecord>, StoreError>;
    /// Makes an organisation's notifications `Pending` and due now, delivered or not; the number
    /// found.
    async fn resend_notifications(
        &self,
        organisation_id: &str,
        ids: &[String],
        now: i64,
    ) -> Result<u64, StoreError>;
    /// One authorisation.
    async fn authorisation(&self, id: &str) -> Result<Option<AuthorisationRecord>, StoreError>;
    /// A card's transaction lines made from `from` to `to` (seconds, inclusive), in order.
    async fn transaction_lines(
        &self,
        public_token: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<TransactionLine>, StoreError>;
    /// The lines a request with this `IdempotencyKey` claim posted, by leg.
    async fn transaction_lines_of_request(
        &self,
        request_id: &str,
    ) -> Result<Vec<TransactionLine>, StoreError>;
    /// An idempotency record younger than `newer_than` (older ones are deleted).
    async fn idempotency(
        &self,
        id: &str,
        newer_than: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Stores an idempotency record (a claim when its status is 0); `false` if one exists.
    async fn insert_idempotency(&self, record: &IdempotencyRecord) -> Result<bool, StoreError>;
    /// Fills in a claim with the first request's answer.
    async fn complete_idempotency(
        &self,
        id: &str,
        status: i64,
        response: &str,
    ) -> Result<(), StoreError>;
    /// Drops a claim whose request failed (only successful answers are remembered).
    async fn release_idempotency(&self, id: &str) -> Result<(), StoreError>;
    /// Takes over a claim made before `stale_before` and never completed (its instance died);
    /// `false` if it was completed or taken over meanwhile.
    async fn take_over_idempotency(
        &self,
        id: &str,
        stale_before: i64,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Stores a new bulk job (nothing if its `idempotency_id` made one already).
    async fn insert_bulk_job(&self, record: &BulkJobRecord) -> Result<(), StoreError>;
    /// The card a request with this `IdempotencyKey` claim created.
    async fn card_by_idempotency(&self, id: &str) -> Result<Option<CardRecord>, StoreError>;
    /// The bulk job a request with this `IdempotencyKey` claim created.
    async fn bulk_job_by_idempotency(&self, id: &str) -> Result<Option<BulkJobRecord>, StoreError>;
    /// One bulk job.
    async fn bulk_job(&self, id: &str) -> Result<Option<BulkJobRecord>, StoreError>;
    /// Jobs still Pending or Processing, oldest first.
    async fn unfinished_bulk_jobs(&self) -> Result<Vec<BulkJobRecord>, StoreError>;
    /// Sets a job's status, if `lease` still holds it; `false` if another worker took it over.
    async fn update_bulk_job(
        &self,
        id: &str,
        lease: &str,
        status: &str,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Takes a job to work on under a new `lease`: Pending, or Processing with no progress since
    /// `stale_before` (its worker died or stalled). `false` if another worker holds it.
    async fn claim_bulk_job(
        &self,
        id: &str,
        lease: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<bool, StoreError>;
    /// In one transaction: lists `card` in the job (`public_tokens`, the list with it) and
    /// inserts it, if `lease` still holds the job. Exactly the cards listed exist, whatever
    /// stalls, crashes and takeovers happen.
    async fn record_bulk_card(
        &self,
        id: &str,
        lease: &str,
        card: &CardRecord,
        public_tokens: &str,
        now: i64,
    ) -> Result<BulkCard, StoreError>;
}

/// What came of [`CardsStore::record_bulk_card`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkCard {
    /// Another worker holds the job now: nothing was written; stop.
    Fenced,
    /// Inserted and listed.
    Recorded,
    /// The card's public token is taken: nothing was written; try another.
    TokenTaken,
}

/// Request counters for rate limits, shared by every instance.
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Adds each `(key, window_start, count)`'s count to the shared count of that key and
    /// window, all in one transaction; returns the shared counts after, in the same order.
    async fn add_hits(
        &self,
        counts: &[(String, i64, i64)],
        now: i64,
    ) -> Result<Vec<i64>, StoreError>;
}
