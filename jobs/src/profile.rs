//! `profile`: applies `account.updated` and `person.updated` events to the
//! profiles, so a product backend that only emits events needs no second
//! integration. The event's `data` is validated by the same function as the
//! API body (`kairos_core::profile`), and merged like a PATCH that creates
//! the profile when missing. Invalid data is a permanent error naming the
//! field. Events about an erased subject are ignored: such an event may have
//! been queued before the erasure and must not bring the data back.

use async_trait::async_trait;
use kairos_core::profile::{parse_profile_event, ProfileUpdate};
use kairos_core::store::{Upserted, WriteMode, WriteSource};
use kairos_core::{Event, StoreError};

use crate::{Job, JobContext, JobError, JobOutput};

/// The job kind's name.
pub const KIND: &str = "profile";

/// The profile job.
#[derive(Debug, Clone, Copy)]
pub struct Profile;

fn store_err(e: StoreError) -> JobError {
    JobError::Retryable(format!("profile: {e}"))
}

#[async_trait]
impl Job for Profile {
    const KIND: &'static str = KIND;
    type Payload = Event;

    async fn run(&self, ctx: &JobContext, event: Event) -> Result<JobOutput, JobError> {
        let update = parse_profile_event(&event)
            .ok_or_else(|| {
                JobError::Permanent(format!(
                    "profile: event type `{}` is not account.updated or person.updated (check the rules)",
                    event.event_type
                ))
            })?
            .map_err(|e| JobError::Permanent(format!("profile: invalid {}: {}", e.field, e.reason)))?;
        let (written, target) = match update {
            ProfileUpdate::Account { account_id, patch } => {
                let out = ctx
                    .store
                    .upsert_account(&ctx.tenant_id, &account_id, patch, WriteMode::Merge, WriteSource::Event)
                    .await
                    .map_err(store_err)?;
                (
                    matches!(out, Upserted::Written { .. }),
                    format!("accounts/{account_id}"),
                )
            }
            ProfileUpdate::Person {
                account_id,
                person_id,
                patch,
            } => {
                let out = ctx
                    .store
                    .upsert_person(
                        &ctx.tenant_id,
                        &account_id,
                        &person_id,
                        patch,
                        WriteMode::Merge,
                        WriteSource::Event,
                    )
                    .await
                    .map_err(store_err)?;
                (
                    matches!(out, Upserted::Written { .. }),
                    format!("accounts/{account_id}/people/{person_id}"),
                )
            }
        };
        Ok(JobOutput {
            result_ref: Some(if written {
                target
            } else {
                format!("{target} (erased; event ignored)")
            }),
        })
    }
}
