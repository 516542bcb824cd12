//! The PostgreSQL store: the production backend, shared by any number of replicas.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use tokio::task::JoinHandle;

use super::sql::impl_store;
use super::{PoolSettings, StoreError, StoreResult, pg_notify};
use crate::events::Bus;

/// How long a pooled connection may sit idle before it is checked again before use.
const IDLE_CHECK_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

pub struct PgStore {
    reader: PgPool,
    /// The same pool as `reader`: PostgreSQL handles concurrent writers itself.
    writer: PgPool,
    bus: Bus,
    /// The LISTEN/NOTIFY tasks, stopped with the store.
    wakeups: Vec<JoinHandle<()>>,
}

impl PgStore {
    pub async fn connect(url: &str, settings: &PoolSettings, bus: Bus) -> StoreResult<Self> {
        let mut options = PgConnectOptions::from_str(url)?.application_name("ticketd");
        // TLS only when the URL asks for it (`sslmode=require`, `verify-full`, or an explicit
        // `prefer`). The driver's own default, `prefer`, would quietly encrypt every
        // loopback and in-cluster connection — without verifying anything — at a cost
        // measured at ten times the latency of a 50-message escalation.
        if !url.contains("sslmode=") {
            options = options.ssl_mode(PgSslMode::Disable);
        }
        if !settings.statement_timeout.is_zero() {
            let millis = settings.statement_timeout.as_millis().to_string();
            options = options.options([("statement_timeout", millis.as_str())]);
        }
        // One connection straight away, so that a wrong host, port or password is
        // reported at once, by name and with its cause, rather than as a pool that
        // timed out.
        let first = tokio::time::timeout(
            settings.acquire_timeout,
            sqlx::ConnectOptions::connect(&options),
        )
        .await;
        let target = match options.get_socket() {
            Some(socket) => socket.display().to_string(),
            None => format!("{}:{}", options.get_host(), options.get_port()),
        };
        match first {
            Ok(Ok(conn)) => {
                let _ = sqlx::Connection::close(conn).await;
            }
            Ok(Err(source)) => return Err(StoreError::Connect { target, source }),
            Err(_) => {
                let waited = settings.acquire_timeout.as_secs_f32();
                return Err(StoreError::Connect {
                    target,
                    source: sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {waited} s"),
                    )),
                });
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // sqlx checks every connection as it goes back to the pool, which already
            // weeds out broken ones; checking again on the way out would add a round
            // trip to every transaction. Only a connection that sat idle long enough for
            // the server to have gone away meanwhile is checked before use.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > IDLE_CHECK_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        let wakeups = pg_notify::spawn(pool.clone(), bus.clone());
        Ok(Self {
            reader: pool.clone(),
            writer: pool,
            bus,
            wakeups,
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        for task in &self.wakeups {
            task.abort();
        }
    }
}

// sqlx's migrator holds a PostgreSQL advisory lock while it runs, so replicas that
// start together apply each migration exactly once.
//
// Log positions are (transaction id << 20) | ordinal; stream reads stay below the oldest
// running transaction (see migrations/postgres/0001_tickets.sql).
impl_store!(
    PgStore,
    sqlx::Postgres,
    next_number = "nextval('ticket_number_seq')",
    event_position = "((pg_current_xact_id()::text::bigint << 20) | {ordinal})",
    horizon = " AND e.position < (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20)",
    skip_locked = " FOR UPDATE SKIP LOCKED",
    lock_agent = "SELECT 1 FROM agents WHERE id = $1 FOR UPDATE",
    lock_api_keys = "SELECT pg_advisory_xact_lock(7460211)",
    lock_channel = "SELECT pg_advisory_xact_lock(7460212, hashtext($1))",
    // Migrations may take long on big tables: their connection has no statement timeout.
    migration_session = "SET statement_timeout = 0",
    migrator = sqlx::migrate!("./migrations/postgres"),
);
