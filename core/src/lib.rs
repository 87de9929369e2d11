//! The small core under every Kairos role: the config machinery and the
//! core config sections, the store (SQLite or Postgres behind one code
//! path) and the queues (SQLite or Redis Streams behind one trait).
//!
//! Nothing here knows about HTTP, job kinds or models: no kind or model is
//! named here (rules and schedules check kind names against the list the
//! binary passes in). The roles above it (`kairos-api`,
//! `kairos-scheduler`, `kairos-worker`) and the job kinds (`kairos-jobs`)
//! are built on these pieces.

pub mod config;
pub mod enqueue;
pub mod event;
pub mod metrics;
pub mod ops;
pub mod profile;
pub mod queue;
pub mod rules;
pub mod schedule;
pub mod store;
pub mod time;

pub use event::Event;
pub use queue::{Delivery, Message, Queue, QueueError};
pub use store::{Store, StoreError};
