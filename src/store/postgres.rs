//! The PostgreSQL store: the production backend, shared by any number of replicas.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

use super::database::Pools;
use super::pg_pool::{ConnectionPool, OnRefusal};
use super::replicas::Standbys;
use super::{PoolSettings, SqlStore, StoreError, StoreResult, pg_notify};
use crate::events::Bus;

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
    // The listener for other replicas' wake-ups keeps one connection of the configured
    // number to itself; the statements share the rest.
    let listener = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy_with(options.clone());
    let statements = (settings.max_connections as usize).saturating_sub(1);
    let pool = ConnectionPool::new(
        options,
        settings.acquire_timeout,
        statements,
        OnRefusal::Retry,
    );
    let mut tasks = pg_notify::spawn(pool.clone(), listener, bus.clone());
    tasks.push(pool.spawn_idle_close());
    let standbys = (!standby_options.is_empty())
        .then(|| Standbys::new(pool.clone(), standby_options, settings));
    if let Some(standbys) = &standbys {
        tasks.push(standbys.spawn_watch());
        tasks.extend(standbys.spawn_idle_close());
    }
    Ok(SqlStore {
        pools: Pools::Postgres { pool, standbys },
        bus,
        tasks,
        search_config: std::sync::RwLock::new("english".into()),
    })
}
