//! The primary's connections.
//!
//! A pool of PostgreSQL connections that checks a connection only when it may need it.
//! sqlx's own pool sends a round trip on every connection it takes back (to flush what an
//! abandoned statement or transaction may have left), which costs PostgreSQL about as much
//! as one more statement per transaction. Here a connection is taken back as it is when
//! its work finished cleanly; one that was dropped while a statement or a transaction may
//! still have been open on it is first rolled back in the background (waiting out any
//! answer still on its way), and closed if that fails, so the pool never hands out a
//! connection in the middle of someone else's work. One that sat idle for a while is
//! checked before it is handed out again.

use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, Object, PoolError, QueueMode, RecycleResult};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use super::{PoolSettings, StoreError, StoreResult};

/// How long a connection may sit idle before it is checked again before use.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(1);

/// The primary's pool; clones share it.
#[derive(Clone)]
pub struct PrimaryPool {
    pool: managed::Pool<Connector>,
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

    async fn recycle(&self, pooled: &mut Pooled, _: &Metrics) -> RecycleResult<sqlx::Error> {
        // Long enough idle for the server or a proxy to have dropped it meanwhile.
        if pooled.idle_since.elapsed() > IDLE_CHECK_AFTER {
            pooled.conn.ping().await?;
        }
        Ok(())
    }
}

impl PrimaryPool {
    pub fn new(options: PgConnectOptions, settings: &PoolSettings, max_size: usize) -> Self {
        let wait = Some(settings.acquire_timeout);
        let pool = managed::Pool::builder(Connector { options })
            .max_size(max_size.max(1))
            .wait_timeout(wait)
            .create_timeout(wait)
            .recycle_timeout(wait)
            // The most recently used connection first: the fewest go idle long enough to
            // need a check.
            .queue_mode(QueueMode::Lifo)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a pool with a runtime and a size builds");
        Self { pool }
    }

    /// A connection for one statement or one transaction.
    pub async fn get(&self) -> StoreResult<Lease> {
        let object = self.pool.get().await.map_err(|err| match err {
            PoolError::Backend(err) => StoreError::from(err),
            PoolError::Closed => StoreError::from(sqlx::Error::PoolClosed),
            PoolError::Timeout(_)
            | PoolError::NoRuntimeSpecified
            | PoolError::PostCreateHook(_) => StoreError::from(sqlx::Error::PoolTimedOut),
        })?;
        Ok(Lease {
            object: Some(object),
            busy: false,
        })
    }

    /// Connections open and idle.
    pub fn stats(&self) -> (u32, u32) {
        let status = self.pool.status();
        (status.size as u32, status.available as u32)
    }
}

/// A connection taken from the pool. Its user marks it [`Lease::busy`] before sending
/// anything and [`Lease::done`] once the work ended cleanly; dropped while busy, it is
/// rolled back before the pool sees it again.
pub struct Lease {
    object: Option<Object<Connector>>,
    busy: bool,
}

impl Lease {
    /// The connection, marked as in the middle of work until [`Lease::done`].
    pub fn busy(&mut self) -> &mut PgConnection {
        self.busy = true;
        &mut self.pooled().conn
    }

    /// The work on the connection ended cleanly: no statement or transaction is open.
    pub fn done(&mut self) {
        self.busy = false;
        self.pooled().idle_since = Instant::now();
    }

    /// Closes the connection instead of returning it (for one whose session was changed).
    pub fn discard(mut self) {
        if let Some(object) = self.object.take() {
            drop(Object::take(object));
        }
    }

    fn pooled(&mut self) -> &mut Pooled {
        self.object
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.busy {
            return;
        }
        let Some(mut object) = self.object.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(Object::take(object));
            return;
        };
        runtime.spawn(async move {
            // ROLLBACK waits for whatever answer is still on its way, then ends any
            // transaction (outside one it only warns). A connection that cannot do that
            // is closed rather than reused.
            match sqlx::raw_sql("ROLLBACK").execute(&mut object.conn).await {
                Ok(_) => object.idle_since = Instant::now(),
                Err(err) => {
                    tracing::debug!(error = %err, "closing a connection left mid-work");
                    drop(Object::take(object));
                }
            }
        });
    }
}
