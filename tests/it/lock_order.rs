//! Batch updates of job runs from different processes — the API marking
//! jobs queued, workers starting and finishing them — touch the same rows
//! at the same time. On Postgres they must lock rows in one order, or they
//! deadlock and one side's write fails.

use kairos::Runtime;
use kairos_core::enqueue::{insert_jobs, NewJob};
use kairos_core::store::{Finish, Finished, JobState};
use kairos_core::time::now_ms;
use rand::seq::SliceRandom;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn marking_starting_and_finishing_the_same_jobs_concurrently_never_deadlocks() {
    let env = Env::new(Deployment::Distributed).await;
    let rt = Runtime::open(env.config("")).await.unwrap();
    let store = rt.store.clone();
    const ROUNDS: usize = 15;
    const JOBS: usize = 200;
    for round in 0..ROUNDS {
        let jobs: Vec<NewJob> = (0..JOBS)
            .map(|i| NewJob {
                id: uuid::Uuid::now_v7().to_string(),
                tenant_id: "t".into(),
                kind: "probe".into(),
                event_id: Some(format!("e{round}-{i}")),
                payload: "{}".into(),
                max_attempts: 3,
                run_after: None,
            })
            .collect();
        let mut tx = store.pool().begin().await.unwrap();
        insert_jobs(&mut tx, &jobs, now_ms()).await.unwrap();
        tx.commit().await.unwrap();
        let mut ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        ids.shuffle(&mut rand::rng());
        let (half_a, half_b) = ids.split_at(JOBS / 2);
        // Workers finish the jobs in batches whose order is whatever
        // order outcomes arrived in, while the API marks them all queued
        // and another worker starts them.
        let finished = |part: &[String]| -> Vec<Finished> {
            part.iter()
                .map(|id| Finished {
                    id: id.clone(),
                    attempt: 1,
                    worker: "w".into(),
                    started_at: now_ms(),
                    finish: Finish::Succeeded { result_ref: None },
                })
                .collect()
        };
        let (fa, fb) = (finished(half_a), finished(half_b));
        let mut rev = ids.clone();
        rev.reverse();
        let (s1, s2, s3, s4) = (store.clone(), store.clone(), store.clone(), store.clone());
        let (ids1, ids2) = (ids.clone(), rev);
        let (r1, r2, r3, r4) = tokio::join!(
            tokio::spawn(async move { s1.mark_queued(&ids1).await }),
            tokio::spawn(async move { s2.start(&ids2, "w2").await.map(|_| ()) }),
            tokio::spawn(async move { s3.finish(&fa).await }),
            tokio::spawn(async move { s4.finish(&fb).await }),
        );
        for (what, r) in [("mark_queued", r1), ("start", r2), ("finish a", r3), ("finish b", r4)] {
            if let Err(e) = r.expect("task") {
                panic!("round {round}: {what} failed: {e}");
            }
        }
        let states = store.jobs_by_ids(&ids).await.unwrap();
        assert!(
            states
                .iter()
                .all(|j| j.state == JobState::Succeeded || j.state == JobState::Running),
            "round {round}"
        );
    }
}
