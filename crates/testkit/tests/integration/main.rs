//! certbound from outside, in one test binary (one link, one process): every part through its
//! real listeners, on SQLite or (with CERTBOUND_TEST_DATABASE_URL) PostgreSQL. Each module is one
//! area; the trust decisions every party shares are in `trust`.

mod abuse;
mod authz;
mod cards;
mod console;
mod directory;
mod instances;
mod ledger;
mod lifecycle;
mod lifecycle_cards;
mod limits;
mod ops;
mod proxy;
mod routers;
mod seams;
mod seed_flow;
mod tls_policy;
mod trust;
mod webhooks;
