//! The small core under every Kairos role: typed configuration, the store
//! (SQLite or Postgres behind one code path) and the queues (SQLite or
//! Redis Streams behind one trait).
//!
//! Nothing here knows about HTTP, job kinds or models; the roles above it
//! (`kairos-api`, `kairos-scheduler`, `kairos-worker`) and the job kinds
//! (`kairos-jobs`) are built on these pieces.

pub mod churn;
pub mod config;
pub mod event;
pub mod profile;
pub mod queue;
pub mod rules;
pub mod schedule;
pub mod sentiment;
pub mod store;
pub mod time;

pub use config::Config;
pub use event::Event;
pub use queue::{Delivery, Message, Queue, QueueError};
pub use store::{Store, StoreError};
