//! The `certbound` binary as a process, in one test binary: `up`, the client commands, the audit
//! trail.

mod audit;
mod client;
mod up;
