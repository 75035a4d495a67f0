//! certbound's storage: the traits the parts need, one SQL implementation over SQLite (the
//! embedded default: WAL, `synchronous=FULL`) and PostgreSQL (scale-out), the embedded
//! migrations, and envelope encryption of secrets under the master key.
//!
//! Protocol decisions do not live here: the store answers questions and performs atomic
//! operations (use a `jti` once, revoke a certificate), nothing more.

mod card_memory;
mod change_feed;
pub mod clock;
mod database;
mod group_commit;
mod jti_log;
mod memory;
mod records;
mod sealed;

pub use database::{Backend, Database, Reseal, SealedValue, StoreError};
pub use group_commit::{Committer, UsedJtiCommits};
pub use memory::MemoryStore;
pub use records::{
    AccessTokenRecord, Announce, AuthorisationChange, AuthorisationRecord, AuthzStore, BulkCard,
    BulkJobRecord, CardRecord, CardsStore, CertificateRecord, ClientRecord, DirectoryStore,
    IdempotencyRecord, KeyMaterialRecord, KeyMaterialStore, NotificationDraft, NotificationRecord,
    OrganisationRecord, Posted, Posting, RateLimitStore, ReplayStore, SigningKeyRecord,
    SoftwareStatementRecord, TokenReference, TokenStanding, TokenStandingStore, TransactionLine,
};
pub use sealed::{MasterKey, SealError};
