//! Group commit of SCIM writes. SQLite has one writer at a time: concurrent `BEGIN IMMEDIATE`s from the pool's
//! connections wait in SQLite's busy handler, which sleeps 1, 2, 5 … 100 ms between tries, so four IdP requests in
//! flight answered in up to 100 ms each. Instead one task takes every SCIM write queued at that moment and commits
//! them in one transaction, each inside its own savepoint: a write that fails is rolled back alone and answered
//! with its own error, the others commit together, and every caller is answered only after the COMMIT (the 2xx
//! still means "on disk"). Writes of other processes (the CLI) still meet the busy handler.

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::rows;
use crate::directory::{ScimKind, ScimRecord, ScimWrite, StoreError};

/// Writes committed in one transaction at most.
const MAX_BATCH: usize = 128;

enum Job {
    Put {
        source: String,
        write: Box<ScimWrite>,
        answer: oneshot::Sender<Result<ScimRecord, StoreError>>,
    },
    Delete {
        source: String,
        kind: ScimKind,
        id: String,
        rev: Option<i64>,
        answer: oneshot::Sender<Result<bool, StoreError>>,
    },
}

/// The handle the store keeps; the task ends when it is dropped.
pub(super) struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    pub(super) fn start(pool: SqlitePool) -> Committer {
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(pool, rx));
        Committer { jobs }
    }

    pub(super) async fn put(&self, source: &str, write: ScimWrite) -> Result<ScimRecord, StoreError> {
        let (answer, rx) = oneshot::channel();
        self.send(Job::Put { source: source.to_string(), write: Box::new(write), answer }).await?;
        rx.await.map_err(|_| gone())?
    }

    pub(super) async fn delete(
        &self,
        source: &str,
        kind: ScimKind,
        id: &str,
        rev: Option<i64>,
    ) -> Result<bool, StoreError> {
        let (answer, rx) = oneshot::channel();
        self.send(Job::Delete { source: source.to_string(), kind, id: id.to_string(), rev, answer }).await?;
        rx.await.map_err(|_| gone())?
    }

    async fn send(&self, job: Job) -> Result<(), StoreError> {
        self.jobs.send(job).await.map_err(|_| gone())
    }
}

fn gone() -> StoreError {
    StoreError::Query("the store's writer has stopped".into())
}

/// A job's result, kept until the batch's COMMIT decides whether it stands.
enum Outcome {
    Put(oneshot::Sender<Result<ScimRecord, StoreError>>, Result<ScimRecord, StoreError>),
    Delete(oneshot::Sender<Result<bool, StoreError>>, Result<bool, StoreError>),
}

impl Outcome {
    /// Whether the job wrote something that needs the COMMIT.
    fn wrote(&self) -> bool {
        matches!(self, Outcome::Put(_, Ok(_)) | Outcome::Delete(_, Ok(true)))
    }

    /// Answers the caller: its own result when the batch committed (or when it wrote nothing), else the reason
    /// the batch did not commit.
    fn answer(self, committed: &Result<(), String>) {
        let lost = |why: &String| StoreError::Query(format!("the write was not committed: {why}").into());
        let wrote = self.wrote();
        match (self, committed) {
            (Outcome::Put(tx, _), Err(why)) if wrote => drop(tx.send(Err(lost(why)))),
            (Outcome::Delete(tx, _), Err(why)) if wrote => drop(tx.send(Err(lost(why)))),
            (Outcome::Put(tx, r), _) => drop(tx.send(r)),
            (Outcome::Delete(tx, r), _) => drop(tx.send(r)),
        }
    }
}

async fn run(pool: SqlitePool, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let jobs = std::mem::take(&mut batch);
        let mut outcomes = Vec::with_capacity(jobs.len());
        let committed = commit(&pool, jobs, &mut outcomes).await;
        for o in outcomes {
            o.answer(&committed);
        }
    }
}

/// Runs `jobs` in one transaction, pushing each one's outcome; a job that could not run gets the batch's error.
async fn commit(pool: &SqlitePool, jobs: Vec<Job>, outcomes: &mut Vec<Outcome>) -> Result<(), String> {
    let mut jobs = jobs.into_iter();
    let fail_rest = |jobs: std::vec::IntoIter<Job>, outcomes: &mut Vec<Outcome>, why: String| {
        outcomes.extend(jobs.map(|j| not_run(j, &why)));
        Err(why)
    };
    let mut conn = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => return fail_rest(jobs, outcomes, e.to_string()),
    };
    if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        return fail_rest(jobs, outcomes, e.to_string());
    }
    // A SCIM write changes the source's view: the daemon's quiet record goes with the batch.
    if let Err(e) = sqlx::query(super::super::FORGET_QUIET).execute(&mut *conn).await {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return fail_rest(jobs, outcomes, e.to_string());
    }
    while let Some(job) = jobs.next() {
        if let Err(e) = sqlx::query("SAVEPOINT scim_write").execute(&mut *conn).await {
            outcomes.push(not_run(job, &e.to_string()));
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return fail_rest(jobs, outcomes, e.to_string());
        }
        let outcome = match job {
            Job::Put { source, write, answer } => {
                Outcome::Put(answer, rows::put_in(&mut conn, &source, rows::table(write.kind), &write).await)
            }
            Job::Delete { source, kind, id, rev, answer } => {
                Outcome::Delete(answer, rows::delete_in(&mut conn, &source, kind, &id, rev).await)
            }
        };
        // A write that failed half-way leaves nothing behind; the others of the batch are not affected.
        let mut ended = Ok(());
        if !outcome.wrote() {
            ended = sqlx::query("ROLLBACK TO scim_write").execute(&mut *conn).await.map(drop);
        }
        if ended.is_ok() {
            ended = sqlx::query("RELEASE scim_write").execute(&mut *conn).await.map(drop);
        }
        outcomes.push(outcome);
        if let Err(e) = ended {
            // The transaction is in an unknown state: nothing of this batch may stand.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return fail_rest(jobs, outcomes, format!("savepoint: {e}"));
        }
    }
    match sqlx::query("COMMIT").execute(&mut *conn).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e.to_string())
        }
    }
}

/// The outcome of a job that never ran.
fn not_run(job: Job, why: &str) -> Outcome {
    let e = || StoreError::Query(format!("the write was not committed: {why}").into());
    match job {
        Job::Put { answer, .. } => Outcome::Put(answer, Err(e())),
        Job::Delete { answer, .. } => Outcome::Delete(answer, Err(e())),
    }
}
