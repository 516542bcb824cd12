//! The PostgreSQL store: the production backend, shared by any number of replicas.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

use super::database::Pools;
use super::replicas::Standbys;
use super::{PoolSettings, SqlStore, StoreError, StoreResult, pg_notify};
use crate::events::Bus;

/// How long a pooled connection may sit idle before it is checked again before use.
const IDLE_CHECK_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The options ticketd connects with to the server `url` names.
fn options(url: &str, settings: &PoolSettings) -> StoreResult<PgConnectOptions> {
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
    Ok(options)
}

/// Connects to the PostgreSQL server `url` names, and listens for other replicas'
/// wake-ups. Routed reads go to the streaming standbys `read_urls` name, if any.
pub async fn connect(
    url: &str,
    read_urls: &[String],
    settings: &PoolSettings,
    bus: Bus,
) -> StoreResult<SqlStore> {
    let options = options(url, settings)?;
    let standby_options = read_urls
        .iter()
        .map(|url| self::options(url.trim(), settings))
        .collect::<StoreResult<Vec<_>>>()?;
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
    let mut tasks = pg_notify::spawn(pool.clone(), bus.clone());
    let standbys = (!standby_options.is_empty())
        .then(|| Standbys::new(pool.clone(), standby_options, settings));
    if let Some(standbys) = &standbys {
        tasks.push(standbys.spawn_watch());
    }
    Ok(SqlStore {
        pools: Pools::Postgres { pool, standbys },
        bus,
        tasks,
        search_config: std::sync::RwLock::new("english".into()),
    })
}
