//! `envctl daemon`: one process that owns a store several users share, and the client side that
//! every other command uses when its home belongs to one.
//!
//! Nix's multi-user model, sized for a GPU workstation or a few nodes: the daemon runs as the
//! store's owner (a dedicated account, or root) and is the only process that writes the store
//! and the profiles; users talk to it over a Unix socket, where the kernel tells it who they are
//! (`SO_PEERCRED`), and send what to do (a planned apply, a rollback, a deletion), never files.
//! Reading needs no daemon: sessions, listings and verify read the home directly.
//!
//! - [`protocol`]: the requests and answers (one JSON line each way);
//! - [`policy`]: who may do what (per-user and team profiles, trusted users);
//! - [`server`]: the daemon;
//! - [`client`]: sending a request, and holding a session's GC root through the daemon.

pub mod client;
pub mod policy;
pub mod protocol;
pub mod server;
