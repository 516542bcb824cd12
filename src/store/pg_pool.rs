//! PostgreSQL connections: the primary's, and each standby's for reads.
//!
//! A pool of PostgreSQL connections that checks a connection only when it may need it.
//! sqlx's own pool sends a round trip on every connection it takes back (to flush what an
//! abandoned statement or transaction may have left), which costs PostgreSQL about as much
//! as one more statement per transaction. Here a connection is taken back as it is when
//! its work finished cleanly. One dropped while a statement or a transaction may still
//! have been open on it is settled in the background first — its transaction rolled
//! back, or any answer still on its way read out — and closed if that fails or cannot
//! finish, so the pool never hands out a connection in the middle of someone else's work.
//! One that sat idle for a while is checked before it is handed out again; connections
//! are replaced after [`MAX_LIFETIME`] and closed after [`IDLE_TIMEOUT`] unused.

use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, Object, PoolError, QueueMode, RecycleError, RecycleResult};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use super::StoreResult;

/// How long a connection may sit idle before it is checked again before use.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(1);
/// A connection older than this is closed instead of reused (server-side state such as
/// prepared statements of abandoned calls does not pile up for ever).
pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// A connection unused this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long a connection dropped mid-work may take to settle (a statement it was running
/// must end first) before it is closed instead.
const SETTLE_WITHIN: Duration = Duration::from_secs(10);

/// A pool of connections to one server; clones share it.
#[derive(Clone)]
pub struct ConnectionPool {
    pool: managed::Pool<Connector>,
    acquire_timeout: Duration,
    /// Retry for the primary, which every write needs; Fail for a standby, whose reads
    /// the primary can take instead.
    on_refusal: OnRefusal,
}

/// How a pool meets a server that refuses or resets a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRefusal {
    /// Tries again until the acquire timeout.
    Retry,
    /// Fails at once.
    Fail,
}

struct Connector {
    options: PgConnectOptions,
}

/// A pooled connection and when it last finished its work.
pub struct Pooled {
    conn: PgConnection,
    idle_since: Instant,
}

impl managed::Manager for Connector {
    type Type = Pooled;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<Pooled, sqlx::Error> {
        Ok(Pooled {
            conn: self.options.connect().await?,
            idle_since: Instant::now(),
        })
    }

    async fn recycle(&self, pooled: &mut Pooled, metrics: &Metrics) -> RecycleResult<sqlx::Error> {
        match reuse(metrics.age(), pooled.idle_since.elapsed()) {
            Reuse::Close => Err(RecycleError::message("past its lifetime")),
            Reuse::AfterPing => Ok(pooled.conn.ping().await?),
            Reuse::AsIs => Ok(()),
        }
    }
}

impl ConnectionPool {
    pub fn new(
        options: PgConnectOptions,
        acquire_timeout: Duration,
        max_size: usize,
        on_refusal: OnRefusal,
    ) -> Self {
        let pool = managed::Pool::builder(Connector { options })
            .max_size(max_size.max(1))
            // The most recently used connection first: the fewest go idle long enough to
            // need a check, and the rest can time out.
            .queue_mode(QueueMode::Lifo)
            .build()
            .expect("a pool with a runtime and a size builds");
        Self {
            pool,
            acquire_timeout,
            on_refusal,
        }
    }

    /// A connection for one statement or one transaction, within the acquire timeout
    /// in all. With [`OnRefusal::Retry`], a server that refuses connections for a moment
    /// (restarting, or still starting up) is tried again until then.
    pub async fn get(&self) -> StoreResult<Lease> {
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        let mut backoff = Duration::from_millis(10);
        let object = loop {
            let err = match tokio::time::timeout_at(deadline, self.pool.get()).await {
                Ok(Ok(object)) => break object,
                Ok(Err(PoolError::Backend(err)))
                    if self.on_refusal == OnRefusal::Retry && is_transient(&err) =>
                {
                    err
                }
                Ok(Err(PoolError::Backend(err))) => return Err(err.into()),
                Ok(Err(PoolError::Closed)) => return Err(sqlx::Error::PoolClosed.into()),
                Ok(Err(_)) | Err(_) => return Err(sqlx::Error::PoolTimedOut.into()),
            };
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(err.into());
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        };
        Ok(Lease {
            object: Some(object),
            busy: false,
            in_transaction: false,
            close_on_drop: false,
        })
    }

    /// Connections open and idle.
    pub fn stats(&self) -> (u32, u32) {
        let status = self.pool.status();
        (status.size as u32, status.available as u32)
    }

    /// A task that closes the connections unused for [`IDLE_TIMEOUT`], once a minute.
    pub fn spawn_idle_close(&self) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                pool.retain(|pooled, _| stays_open(pooled.idle_since.elapsed()));
            }
        })
    }
}

/// What becomes of a connection about to be handed out again.
#[derive(Debug, PartialEq, Eq)]
enum Reuse {
    AsIs,
    /// Idle long enough for the server or a proxy to have dropped it meanwhile.
    AfterPing,
    /// Past [`MAX_LIFETIME`], however recently used.
    Close,
}

fn reuse(age: Duration, idle: Duration) -> Reuse {
    if age > MAX_LIFETIME {
        Reuse::Close
    } else if idle > IDLE_CHECK_AFTER {
        Reuse::AfterPing
    } else {
        Reuse::AsIs
    }
}

/// Whether an idle connection stays in the pool (see [`ConnectionPool::spawn_idle_close`]).
fn stays_open(idle: Duration) -> bool {
    idle < IDLE_TIMEOUT
}

/// A refused or reset connection, or a server that does not take connections yet.
fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("57P03" | "53300")),
        _ => false,
    }
}

/// A connection taken from the pool. Its user marks it [`Lease::busy`] before sending
/// anything and [`Lease::done`] once the work ended cleanly; dropped while busy, it is
/// settled before the pool sees it again.
pub struct Lease {
    object: Option<Object<Connector>>,
    busy: bool,
    in_transaction: bool,
    close_on_drop: bool,
}

impl Lease {
    /// The connection, marked as in the middle of work until [`Lease::done`].
    pub fn busy(&mut self) -> &mut PgConnection {
        self.busy = true;
        &mut self.pooled().conn
    }

    /// Sends `BEGIN`: until [`Lease::done`], a drop rolls the transaction back.
    pub async fn begin(&mut self) -> StoreResult<()> {
        self.in_transaction = true;
        sqlx::raw_sql("BEGIN").execute(self.busy()).await?;
        Ok(())
    }

    /// Sends `COMMIT`; the connection is clean again once it succeeded.
    pub async fn commit(&mut self) -> StoreResult<()> {
        sqlx::raw_sql("COMMIT").execute(self.busy()).await?;
        self.done();
        Ok(())
    }

    /// Sends `ROLLBACK`; the connection is clean again once it succeeded.
    pub async fn rollback(&mut self) -> StoreResult<()> {
        sqlx::raw_sql("ROLLBACK").execute(self.busy()).await?;
        self.done();
        Ok(())
    }

    /// The work on the connection ended cleanly: no statement or transaction is open.
    pub fn done(&mut self) {
        self.busy = false;
        self.in_transaction = false;
        self.pooled().idle_since = Instant::now();
    }

    /// The connection's session was changed: close it when dropped, however that comes.
    pub fn close_on_drop(&mut self) {
        self.close_on_drop = true;
    }

    fn pooled(&mut self) -> &mut Pooled {
        self.object
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(object) = self.object.take() else {
            return;
        };
        if self.close_on_drop {
            drop(Object::take(object));
            return;
        }
        if !self.busy {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(Object::take(object));
            return;
        };
        let mut unsettled = Unsettled(Some(object));
        let in_transaction = self.in_transaction;
        runtime.spawn(async move {
            let Some(pooled) = unsettled.0.as_mut() else {
                return;
            };
            // Either waits for whatever answer is still on its way first; an error in it,
            // or a broken connection, leaves the connection to be closed.
            let settle = async {
                if in_transaction {
                    sqlx::raw_sql("ROLLBACK")
                        .execute(&mut pooled.conn)
                        .await
                        .map(drop)
                } else {
                    pooled.conn.ping().await
                }
            };
            match tokio::time::timeout(SETTLE_WITHIN, settle)
                .await
                .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut))
            {
                Ok(()) => {
                    pooled.idle_since = Instant::now();
                    // Back to the pool.
                    drop(unsettled.0.take());
                }
                Err(err) => tracing::debug!(error = %err, "closing a connection left mid-work"),
            }
        });
    }
}

/// A connection being settled: closed, not returned, unless the settling finished.
struct Unsettled(Option<Object<Connector>>);

impl Drop for Unsettled {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(Object::take(object));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_checked_after_idling_and_replaced_when_old() {
        let (second, minute) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(reuse(minute, Duration::from_millis(10)), Reuse::AsIs);
        assert_eq!(reuse(minute, IDLE_CHECK_AFTER), Reuse::AsIs);
        assert_eq!(reuse(minute, IDLE_CHECK_AFTER + second), Reuse::AfterPing);
        // Age wins over recent use.
        assert_eq!(reuse(MAX_LIFETIME + second, Duration::ZERO), Reuse::Close);
        assert_eq!(reuse(MAX_LIFETIME, Duration::ZERO), Reuse::AsIs);
        assert!(stays_open(IDLE_TIMEOUT - minute));
        assert!(!stays_open(IDLE_TIMEOUT));
    }
}
