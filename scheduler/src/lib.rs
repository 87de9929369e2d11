//! The scheduler role: turns stored intent into queued work.
//!
//! Today that is the dispatcher: the API stores an event and its jobs in one
//! transaction and queues them at once; if it could not (it crashed between
//! the two, or the queue was down), the jobs stay `pending` in the store and
//! the dispatcher here queues them. Several schedulers may run: claiming is
//! a conditional update, so each pending job is claimed by one of them.
//! Cron schedules will live here too.

pub mod dispatcher;

pub use dispatcher::Dispatcher;
