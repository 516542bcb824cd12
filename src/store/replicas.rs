//! Reads on PostgreSQL streaming standbys (`TICKETD_DATABASE_READ_URL`).
//!
//! Only the reads a caller asks for and nothing writes after — ticket lists and counts,
//! searches, activity feeds, reports, the audit log — may go to a standby; every write,
//! and every read that a write depends on, stays on the primary.
//!
//! A caller never reads older than its own writes. A request that commits a write is
//! answered with a consistency token: the primary's WAL position after the commit. A
//! read that carries the token goes to a standby that has replayed at least that far; if
//! none has, it waits up to [`TOKEN_WAIT`] for one, then reads on the primary. A read
//! without a token goes to any standby less than [`MAX_STALENESS`] behind.
//!
//! One task per process follows each standby's replay position and the primary's WAL
//! position every [`WATCH_EVERY`], which gives the lag (`ticketd_db_replica_lag_seconds`)
//! and whether the standby answers (`ticketd_db_replica_up`). A standby that fails a read
//! or stops answering is left out until it answers again, and the read it failed is
//! made again on the primary, as are the reads in flight on it when it stops answering
//! the watch: a standby going away costs latency, never an answer.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::watch;

use sqlx::Postgres;

use super::database::{On, Pools, RowType, Statement, bad_arguments, run};

mod session;

use super::pg_pool::{ConnectionPool, OnRefusal};
use super::{PoolSettings, StoreError, StoreResult};
use crate::domain::consistency::Lsn;
pub(super) use session::note_write;
pub use session::session;
use session::{ON_PRIMARY, UNPINNED, pin, pinned, read_after};

/// Most standbys one process sends reads to (each has a pool of its own).
pub const MAX_STANDBYS: usize = 8;
/// How long a read with a token waits for a standby to replay that far.
pub const TOKEN_WAIT: Duration = Duration::from_millis(100);
/// A read without a token skips standbys further behind than this.
pub const MAX_STALENESS: Duration = Duration::from_secs(10);
/// How often standbys' replay positions are read.
pub const WATCH_EVERY: Duration = Duration::from_millis(100);
/// Primary positions kept to judge lag by: ten minutes' worth.
const SAMPLES_KEPT: usize = 6_000;

/// Sends the rest of the request's routed reads to the primary (where the caller makes
/// this one again), and counts the fallback.
fn fall_back() {
    pin(ON_PRIMARY);
    Target::Fallback.count();
}

/// Runs a routed read as `$method` on the standby [`Pools::standby`] picks, or on the
/// primary when none can serve it or the standby fails it.
macro_rules! routed {
    ($pools:ident, $statement:ident, $method:ident) => {{
        if let Some(standby) = $pools.standby().await {
            let mut held = None;
            let read = async {
                let lease = held.insert(standby.pool.get().await?);
                let rows = run!(Postgres, $statement.clone(), lease.busy(), $method);
                lease.done();
                Ok(rows)
            };
            match standby.unless_silent(read).await {
                Some(attempt) => {
                    if let Some(result) = standby.settle(attempt) {
                        return result;
                    }
                }
                None => {
                    // Mid-statement on a silent server: closed rather than settled, which
                    // would hold a place in the pool until the server answers.
                    if let Some(lease) = held.as_mut() {
                        lease.close_on_drop();
                    }
                    fall_back();
                }
            }
        }
        $pools.$method($statement).await
    }};
}

impl Pools {
    /// Where a read runs that may go to a standby: one a caller asked for and nothing
    /// writes after (see `replicas`).
    pub fn routed(&self) -> On<'_> {
        On::Routed(self)
    }

    /// The standby a routed read goes to, if any (counting where it went).
    async fn standby(&self) -> Option<&Standby> {
        let Pools::Postgres {
            standbys: Some(standbys),
            ..
        } = self
        else {
            Target::Primary.count();
            return None;
        };
        let chosen = standbys.choose().await;
        if chosen.is_none() {
            Target::Fallback.count();
        }
        chosen
    }

    pub(super) async fn routed_fetch_all<R: RowType>(
        &self,
        statement: Statement<'_>,
    ) -> StoreResult<Vec<R>> {
        routed!(self, statement, fetch_all)
    }

    pub(super) async fn routed_fetch_optional<R: RowType>(
        &self,
        statement: Statement<'_>,
    ) -> StoreResult<Option<R>> {
        routed!(self, statement, fetch_optional)
    }

    pub(super) async fn routed_fetch_one<R: RowType>(
        &self,
        statement: Statement<'_>,
    ) -> StoreResult<R> {
        routed!(self, statement, fetch_one)
    }
}

/// Which database served a routed read, as the `target` label of
/// `ticketd_db_reads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// No standby is configured.
    Primary,
    Replica,
    /// A standby is configured but could not serve this read.
    Fallback,
}

impl Target {
    pub(super) fn count(self) {
        let target = match self {
            Target::Primary => "primary",
            Target::Replica => "replica",
            Target::Fallback => "fallback",
        };
        metrics::counter!("ticketd_db_reads_total", "target" => target).increment(1);
    }
}

/// One standby and what was last seen of it.
pub(super) struct Standby {
    /// Its index in `TICKETD_DATABASE_READ_URL`, the `replica` label of its metrics.
    label: String,
    /// Host and port, for logs.
    target: String,
    /// Its connections for reads, taken back without a check when a read ended
    /// cleanly, as the primary's are.
    pub(super) pool: ConnectionPool,
    /// One connection of its own for the watch, so that a busy read pool cannot make
    /// a standby look gone.
    watch_pool: PgPool,
    replayed: AtomicU64,
    up: AtomicBool,
    /// Whether it has been reported up or down yet.
    known: AtomicBool,
    lag_millis: AtomicU64,
    /// Raised while the standby does not answer the watch, so that reads in flight on it
    /// give up; only the watch raises and lowers it.
    silent: watch::Sender<bool>,
}

impl Standby {
    fn usable(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn replayed(&self) -> Lsn {
        Lsn(self.replayed.load(Ordering::Relaxed))
    }

    /// Leaves the standby out until it answers the watch again. What was known of its
    /// position is forgotten: a standby that restarts comes back further behind.
    pub(super) fn mark_down(&self, why: &dyn fmt::Display) {
        self.replayed.store(0, Ordering::Relaxed);
        self.lag_millis.store(u64::MAX, Ordering::Relaxed);
        let was_up = self.up.swap(false, Ordering::Relaxed);
        if was_up || !self.known.swap(true, Ordering::Relaxed) {
            tracing::warn!(standby = %self.target, error = %why, "standby left out of reads");
        }
        metrics::gauge!("ticketd_db_replica_up", "replica" => self.label.clone()).set(0.0);
    }

    /// `read`'s result, or `None` if the standby stops answering the watch meanwhile: a
    /// read in flight on a server that hung, or was cut off without a reset, would
    /// otherwise wait for as long as its connection lives, since the statement timeout
    /// runs on that server. A read given up is made again on the primary, and its
    /// connection closed (see `routed!`).
    async fn unless_silent<T>(
        &self,
        read: impl Future<Output = StoreResult<T>>,
    ) -> Option<StoreResult<T>> {
        let mut silent = self.silent.subscribe();
        tokio::select! {
            result = read => Some(result),
            _ = silent.wait_for(|silent| *silent) => None,
        }
    }

    fn fresh(&self) -> bool {
        self.lag_millis.load(Ordering::Relaxed) <= MAX_STALENESS.as_millis() as u64
    }

    /// What a read on this standby came to: its result, or `None` when it should be
    /// made again on the primary (the standby is then left out until it answers).
    pub(super) fn settle<T>(&self, attempt: StoreResult<T>) -> Option<StoreResult<T>> {
        match attempt {
            Ok(rows) => {
                Target::Replica.count();
                Some(Ok(rows))
            }
            Err(err) if retry_on_primary(&err) => {
                if !busy(&err) && matches!(err, StoreError::Unavailable(_)) {
                    self.mark_down(&err);
                }
                fall_back();
                None
            }
            Err(err) => Some(Err(err)),
        }
    }

    /// Its replay position now, asked on `on`; an error if it is not a standby (any
    /// more: a promoted standby keeps the last position it replayed).
    async fn replay_position<'c>(&self, on: impl sqlx::PgExecutor<'c>) -> StoreResult<Lsn> {
        let (recovering, position): (bool, Option<i64>) = sqlx::query_as(
            "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint",
        )
        .fetch_one(on)
        .await?;
        match (recovering, position) {
            (true, Some(position)) => Ok(Lsn(position as u64)),
            _ => Err(StoreError::Corrupt(
                "the read URL names a server that is not a streaming standby".into(),
            )),
        }
    }
}

/// The standbys of one store and the primary they follow.
pub struct Standbys {
    primary: ConnectionPool,
    members: Vec<Standby>,
    /// Round-robin turn among standbys.
    next: AtomicUsize,
    /// The primary's WAL position as sampled by the watch, oldest first.
    samples: Mutex<VecDeque<(Instant, Lsn)>>,
}

impl Standbys {
    /// Pools for every standby URL (connected lazily: a standby that is down at start
    /// only means reads go to the primary until it answers).
    pub(super) fn new(
        primary: ConnectionPool,
        standbys: Vec<PgConnectOptions>,
        settings: &PoolSettings,
    ) -> Arc<Self> {
        let mut members = Vec::with_capacity(standbys.len());
        for (i, options) in standbys.into_iter().enumerate() {
            let target = format!("{}:{}", options.get_host(), options.get_port());
            let pool = ConnectionPool::new(
                options.clone(),
                settings.acquire_timeout.min(Duration::from_secs(1)),
                settings.max_connections as usize,
                // A standby that refuses a read is left out at once, and the primary
                // takes the read: the watch finds the standby again when it answers.
                OnRefusal::Fail,
            );
            let watch_pool = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(WATCH_EVERY * 10)
                .connect_lazy_with(options);
            members.push(Standby {
                label: i.to_string(),
                target,
                pool,
                watch_pool,
                replayed: AtomicU64::new(0),
                up: AtomicBool::new(false),
                known: AtomicBool::new(false),
                lag_millis: AtomicU64::new(u64::MAX),
                silent: watch::Sender::new(false),
            });
        }
        Arc::new(Standbys {
            primary,
            members,
            next: AtomicUsize::new(0),
            samples: Mutex::new(VecDeque::new()),
        })
    }

    /// A position past the commit of every transaction visible on the primary now (the
    /// token of a request that wrote, and where a stream's catch-up may be read): the
    /// WAL flushed so far, since a commit shows only once its record is flushed; but
    /// with `synchronous_commit = off`, where commits show before, all WAL inserted so
    /// far. (The flushed position is already on its way to the standbys, while WAL only
    /// inserted may wait for the WAL writer, so an idle primary's standby reaches it at
    /// once.)
    pub async fn committed_position(&self) -> StoreResult<Lsn> {
        let sql = "SELECT (CASE WHEN current_setting('synchronous_commit') = 'off' \
                   THEN pg_current_wal_insert_lsn() ELSE pg_current_wal_flush_lsn() END \
                   - '0/0'::pg_lsn)::bigint";
        Ok(Lsn(self.primary_position(sql).await? as u64))
    }

    /// A WAL position the primary answers `sql` with.
    async fn primary_position(&self, sql: &'static str) -> StoreResult<i64> {
        let mut lease = self.primary.get().await?;
        let (position,): (i64,) = sqlx::query_as(sql).fetch_one(lease.busy()).await?;
        lease.done();
        Ok(position)
    }

    /// The standby a routed read should use, or `None` for the primary. Within one
    /// request every routed read goes where the first went (the primary once the
    /// request has written); a standby must be less than [`MAX_STALENESS`] behind and,
    /// with a token, have replayed at least that far, waiting up to [`TOKEN_WAIT`] for it.
    pub(super) async fn choose(&self) -> Option<&Standby> {
        let count = self.members.len();
        match pinned() {
            ON_PRIMARY => return None,
            UNPINNED => {}
            i => {
                if let Some(standby) = self.members.get(i).filter(|s| s.usable()) {
                    return Some(standby);
                }
                // Gone since: the rest of the request reads where it can see at least
                // as much, the primary.
                pin(ON_PRIMARY);
                return None;
            }
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut candidates = (0..count)
            .map(|i| (start + i) % count)
            .filter(|&i| self.members[i].usable() && self.members[i].fresh());
        let after = read_after().unwrap_or(Lsn(0));
        let chosen = match candidates
            .clone()
            .find(|&i| self.members[i].replayed() >= after)
        {
            Some(i) => Some(i),
            // None has replayed that far yet: wait briefly on one of them.
            None => match candidates.next() {
                Some(i) => self.wait_for(&self.members[i], after).await.then_some(i),
                None => None,
            },
        };
        pin(chosen.unwrap_or(ON_PRIMARY));
        chosen.map(|i| &self.members[i])
    }

    /// Whether `standby` replays as far as `after` within [`TOKEN_WAIT`].
    async fn wait_for(&self, standby: &Standby, after: Lsn) -> bool {
        let deadline = tokio::time::Instant::now() + TOKEN_WAIT;
        loop {
            let asked = tokio::time::timeout_at(deadline, async {
                let mut lease = standby.pool.get().await?;
                let position = standby.replay_position(lease.busy()).await?;
                lease.done();
                Ok::<_, StoreError>(position)
            });
            match asked.await {
                Ok(Ok(position)) => {
                    standby.replayed.fetch_max(position.0, Ordering::Relaxed);
                    if position >= after {
                        return true;
                    }
                }
                Ok(Err(err)) => {
                    if !busy(&err) {
                        standby.mark_down(&err);
                    }
                    return false;
                }
                Err(_) => return false,
            }
            if tokio::time::Instant::now() + Duration::from_millis(5) >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Closes each standby's long-unused read connections, as the primary's are.
    pub(super) fn spawn_idle_close(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.members
            .iter()
            .map(|standby| standby.pool.spawn_idle_close())
            .collect()
    }

    /// Follows the primary's position and each standby's, for as long as the store lives.
    pub(super) fn spawn_watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let standbys = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WATCH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(standbys) = standbys.upgrade() else {
                    return;
                };
                standbys.watch_once().await;
            }
        })
    }

    async fn watch_once(self: &Arc<Self>) {
        let now = Instant::now();
        // Bounded, so that a primary that hangs cannot stop the watch from finding a
        // silent standby.
        let primary = tokio::time::timeout(
            WATCH_EVERY * 10,
            self.primary_position("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint"),
        )
        .await;
        if let Ok(Ok(position)) = primary {
            let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
            samples.push_back((now, Lsn(position as u64)));
            while samples.len() > SAMPLES_KEPT {
                samples.pop_front();
            }
        }
        // All at once, so that silent standbys cost the watch one wait, not one each.
        let mut asked = tokio::task::JoinSet::new();
        for index in 0..self.members.len() {
            let standbys = Arc::clone(self);
            asked.spawn(async move { standbys.watch_standby(index, now).await });
        }
        while asked.join_next().await.is_some() {}
    }

    /// Asks one standby how far it has replayed and records what it says (or that it
    /// said nothing).
    async fn watch_standby(&self, index: usize, now: Instant) {
        let standby = &self.members[index];
        let labels = [("replica", standby.label.clone())];
        let mut held = None;
        let asked = async {
            let conn = held.insert(standby.watch_pool.acquire().await?);
            standby.replay_position(&mut **conn).await
        };
        match tokio::time::timeout(WATCH_EVERY * 10, asked).await {
            Ok(Ok(position)) => {
                standby.replayed.store(position.0, Ordering::Relaxed);
                let lag = {
                    let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
                    behind_since(&samples, position, now)
                };
                // Behind every sample: how far is not known yet, so not fresh.
                let millis = lag.map_or(u64::MAX, |lag| lag.as_millis() as u64);
                standby.lag_millis.store(millis, Ordering::Relaxed);
                if let Some(lag) = lag {
                    metrics::gauge!("ticketd_db_replica_lag_seconds", &labels)
                        .set(lag.as_secs_f64());
                }
                standby.known.store(true, Ordering::Relaxed);
                // Lowered before the standby is usable again, so that a read taken on
                // it does not see the last time it was silent.
                standby
                    .silent
                    .send_if_modified(|silent| std::mem::replace(silent, false));
                if !standby.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(standby = %standby.target, "standby takes reads");
                }
                metrics::gauge!("ticketd_db_replica_up", &labels).set(1.0);
            }
            // No connection within the wait is as silent as no answer.
            Ok(Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut))) | Err(_) => {
                // Its one connection is closed rather than checked, which would hold
                // the pool until the server answers.
                if let Some(conn) = held.as_mut() {
                    conn.close_on_drop();
                }
                standby.mark_down(&"no answer to the replay-position query");
                standby
                    .silent
                    .send_if_modified(|silent| !std::mem::replace(silent, true));
            }
            Ok(Err(err)) => standby.mark_down(&err),
        }
    }
}

/// How long a standby at `replayed` has been missing WAL the primary had: since the
/// oldest sample of the primary's position beyond it. When it has everything sampled,
/// what the primary wrote since the newest sample is unknown, so the age of that sample
/// (zero when the primary answered this round; more while it does not). `None` when it
/// is behind every sample (the samples do not reach back to when it fell behind) or
/// nothing of the primary is known.
fn behind_since(
    samples: &VecDeque<(Instant, Lsn)>,
    replayed: Lsn,
    now: Instant,
) -> Option<Duration> {
    match samples
        .iter()
        .position(|(_, position)| *position > replayed)
    {
        None => samples
            .back()
            .map(|(at, _)| now.saturating_duration_since(*at)),
        Some(0) => None,
        Some(i) => Some(now.saturating_duration_since(samples[i].0)),
    }
}

/// Whether a read failed on a standby only for want of a connection: its pool is full,
/// or the standby has as many connections as it takes (`53300`). A busy standby is not
/// gone.
fn busy(err: &StoreError) -> bool {
    match err {
        StoreError::Unavailable(sqlx::Error::PoolTimedOut) => true,
        StoreError::Unavailable(sqlx::Error::Database(db)) => db.code().as_deref() == Some("53300"),
        _ => false,
    }
}

/// Whether a read that failed on a standby should be made again on the primary: the
/// standby is unreachable, or cancelled the read because replay needed its rows
/// (`40001`, a recovery conflict).
pub(super) fn retry_on_primary(err: &StoreError) -> bool {
    match err {
        StoreError::Unavailable(_) => true,
        // 40001: a recovery conflict; 42P01, 42703, 42883: a table, column or function a
        // migration just added on the primary has not been replayed here yet.
        StoreError::Database(sqlx::Error::Database(db)) => matches!(
            db.code().as_deref(),
            Some("40001" | "42P01" | "42703" | "42883")
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_first_position_the_standby_lacks() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let samples: VecDeque<_> = [(at(0), Lsn(100)), (at(100), Lsn(200)), (at(200), Lsn(300))]
            .into_iter()
            .collect();
        let now = at(250);
        let ms = |n| Some(Duration::from_millis(n));
        // Everything sampled: behind by at most the newest sample's age.
        assert_eq!(behind_since(&samples, Lsn(300), now), ms(50));
        assert_eq!(behind_since(&samples, Lsn(400), now), ms(50));
        assert_eq!(behind_since(&samples, Lsn(300), at(200)), ms(0));
        assert_eq!(behind_since(&samples, Lsn(250), now), ms(50));
        assert_eq!(behind_since(&samples, Lsn(150), now), ms(150));
        assert_eq!(behind_since(&samples, Lsn(100), now), ms(150));
        // Behind the oldest sample: since when is not known.
        assert_eq!(behind_since(&samples, Lsn(99), now), None);
        // The primary never answered: nothing is known.
        assert_eq!(behind_since(&VecDeque::new(), Lsn(0), now), None);
    }

    #[tokio::test]
    async fn a_session_reports_whether_its_request_wrote() {
        let after = Some(Lsn(7));
        let ((), wrote) = session(after, async { assert_eq!(read_after(), after) }).await;
        assert!(!wrote);
        let ((), wrote) = session(None, async { note_write() }).await;
        assert!(wrote);
        // Outside any request nothing is recorded, and nothing fails.
        note_write();
        assert_eq!(read_after(), None);
    }
}
