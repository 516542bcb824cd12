//! The two backends behind one small interface: a [`Statement`] (SQL and the values bound
//! to it) runs on the read pool, the write pool or an open [`Tx`], whichever backend holds
//! them. Store code is therefore plain Rust written once; the backend is chosen in this
//! file only, and the few places where the SQL itself differs are the [`Dialect`]
//! fragments below.
//!
//! Both drivers accept `$N` placeholders. Values are bound by position; statements with
//! many columns are built with [`Statement::columns`] and [`Statement::assignments`],
//! which keep each column next to its value so that a reordered line cannot write a value
//! into the wrong column.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::error::BoxDynError;
use sqlx::postgres::PgRow;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Arguments, Database, Encode, FromRow, Postgres, Sqlite, Type};
use uuid::Uuid;

use std::sync::Arc;

use super::dialect::Dialect;
use super::pg_pool::ConnectionPool;
use super::placeholders::renumber;
use super::replicas::{Standbys, note_write};
pub use super::transaction::Tx;
pub use super::value::{Value, json};
use super::{StoreError, StoreResult};

/// SQL text with the values of its parameters.
#[derive(Debug, Clone)]
pub struct Statement<'q> {
    pub(super) sql: Cow<'static, str>,
    values: Vec<Value<'q>>,
}

impl<'q> Statement<'q> {
    /// A named statement whose `$N` parameters are bound in order with [`Statement::bind`].
    pub fn new(sql: &'static str) -> Self {
        Self {
            sql: Cow::Borrowed(sql),
            values: Vec::new(),
        }
    }

    /// SQL assembled at run time (from trusted pieces only: never from input).
    pub fn owned(sql: String) -> Self {
        Self {
            sql: Cow::Owned(sql),
            values: Vec::new(),
        }
    }

    pub fn bind(mut self, value: impl Into<Value<'q>>) -> Self {
        self.values.push(value.into());
        self
    }

    /// Appends SQL text.
    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.to_mut().push_str(sql);
        self
    }

    /// Appends the placeholder of a new parameter bound to `value`.
    pub fn push_bind(&mut self, value: impl Into<Value<'q>>) -> &mut Self {
        self.values.push(value.into());
        let n = self.values.len();
        let _ = write!(self.sql.to_mut(), "${n}");
        self
    }

    /// Binds `value` to a new parameter without writing it into the SQL; returns its
    /// placeholder, for SQL that wraps it in an expression.
    pub fn add_param(&mut self, value: impl Into<Value<'q>>) -> String {
        self.values.push(value.into());
        format!("${}", self.values.len())
    }

    /// Puts `sql` before the text so far (placeholders keep their numbers).
    pub fn prepend(&mut self, sql: &str) -> &mut Self {
        self.sql.to_mut().insert_str(0, sql);
        self
    }

    /// Appends `(v1, v2, …)`: an `IN` list of new parameters (`(NULL)` when empty, which
    /// matches nothing).
    pub fn push_list<V: Into<Value<'q>>>(&mut self, values: impl IntoIterator<Item = V>) {
        self.push("(");
        let mut first = true;
        for value in values {
            if !first {
                self.push(", ");
            }
            first = false;
            self.push_bind(value);
        }
        if first {
            self.push("NULL");
        }
        self.push(")");
    }

    /// `INSERT INTO table (a, b, …) VALUES ($1, $2, …)` from (column, value) pairs,
    /// followed by `tail` (`ON CONFLICT …`, `RETURNING …`). A column given as
    /// [`Column::Sql`] takes a SQL expression instead of a parameter.
    pub fn insert(table: &str, columns: Vec<(&str, Column<'q>)>, tail: &str) -> Self {
        let mut names = String::new();
        let mut statement = Statement::owned(String::new());
        let mut values = String::new();
        for (i, (name, column)) in columns.into_iter().enumerate() {
            if i > 0 {
                names.push_str(", ");
                values.push_str(", ");
            }
            names.push_str(name);
            match column {
                Column::Value(value) => {
                    statement.values.push(value);
                    let _ = write!(values, "${}", statement.values.len());
                }
                Column::Sql(sql) => values.push_str(&sql),
            }
        }
        statement.sql = Cow::Owned(format!(
            "INSERT INTO {table} ({names}) VALUES ({values}){tail}"
        ));
        statement
    }

    /// `UPDATE table SET a = $1, b = $2, … ` from (column, value) pairs, followed by
    /// `tail`, whose parameters follow the assignments' (bind them with
    /// [`Statement::push_bind`]).
    pub fn update(table: &str, columns: Vec<(&str, Column<'q>)>) -> Self {
        let mut statement = Statement::owned(format!("UPDATE {table} SET "));
        for (i, (name, column)) in columns.into_iter().enumerate() {
            if i > 0 {
                statement.push(", ");
            }
            statement.push(name).push(" = ");
            match column {
                Column::Value(value) => {
                    statement.push_bind(value);
                }
                Column::Sql(sql) => {
                    statement.push(&sql);
                }
            }
        }
        statement
    }

    /// Runs the statement for its effect; returns the rows it touched. On [`Pools`] it
    /// runs on the writer, committed alone.
    pub async fn execute(self, on: impl Into<On<'_>>) -> StoreResult<u64> {
        match on.into() {
            On::Pools(pools) | On::Routed(pools) => pools.write(self).await,
            On::Tx(tx) => tx.execute(self).await,
        }
    }

    /// Every row; on [`Pools`] from a reader.
    pub async fn fetch_all<R: RowType>(self, on: impl Into<On<'_>>) -> StoreResult<Vec<R>> {
        match on.into() {
            On::Pools(pools) => pools.fetch_all(self).await,
            On::Routed(pools) => pools.routed_fetch_all(self).await,
            On::Tx(tx) => tx.fetch_all(self).await,
        }
    }

    pub async fn fetch_optional<R: RowType>(self, on: impl Into<On<'_>>) -> StoreResult<Option<R>> {
        match on.into() {
            On::Pools(pools) => pools.fetch_optional(self).await,
            On::Routed(pools) => pools.routed_fetch_optional(self).await,
            On::Tx(tx) => tx.fetch_optional(self).await,
        }
    }

    pub async fn fetch_one<R: RowType>(self, on: impl Into<On<'_>>) -> StoreResult<R> {
        match on.into() {
            On::Pools(pools) => pools.fetch_one(self).await,
            On::Routed(pools) => pools.routed_fetch_one(self).await,
            On::Tx(tx) => tx.fetch_one(self).await,
        }
    }

    /// The statement with every value owned, to be kept past its borrows.
    pub fn into_owned(self) -> Statement<'static> {
        let values = self
            .values
            .into_iter()
            .map(|value| match value {
                Value::Text(v) => Value::Text(v.map(|t| Cow::Owned(t.into_owned()))),
                Value::Bytes(v) => Value::Bytes(v.map(|b| Cow::Owned(b.into_owned()))),
                Value::Uuid(v) => Value::Uuid(v),
                Value::Int(v) => Value::Int(v),
                Value::Int32(v) => Value::Int32(v),
                Value::Bool(v) => Value::Bool(v),
                Value::Time(v) => Value::Time(v),
                Value::Json(v) => Value::Json(v),
            })
            .collect();
        Statement {
            sql: self.sql,
            values,
        }
    }

    /// How many values are bound.
    pub fn parameters(&self) -> usize {
        self.values.len()
    }

    /// Whether [`renumber`](super::placeholders::renumber) reads the SQL right: no dollar quoting, backslash escapes or
    /// comments, where a `$` or a quote would not mean what it seems to.
    pub fn mergeable(&self) -> bool {
        !["$$", "\\'", "--", "/*"]
            .iter()
            .any(|tricky| self.sql.contains(tricky))
    }

    /// `self` with the writes `before` run as data-modifying CTEs of it (PostgreSQL):
    /// one statement, one round trip. The CTEs and `self` see the same snapshot, so
    /// `self` must not read what they write (foreign keys are checked at the end of the
    /// statement and do see it), and no two may change the same row.
    pub fn after(self, before: Vec<Statement<'static>>) -> Statement<'q> {
        if before.is_empty() {
            return self;
        }
        let mut values = self.values;
        let mut ctes = Vec::with_capacity(before.len());
        for (i, statement) in before.into_iter().enumerate() {
            ctes.push(format!(
                "deferred_{i} AS ({})",
                renumber(&statement.sql, values.len())
            ));
            values.extend(statement.values);
        }
        let ctes = ctes.join(", ");
        let sql = self.sql.trim_start();
        // The word after `sql`'s first one if that is `keyword`, and the rest after it.
        let after = |sql: &'_ str, keyword: &str| -> Option<String> {
            let (first, rest) = sql.split_once(char::is_whitespace)?;
            first
                .eq_ignore_ascii_case(keyword)
                .then(|| rest.trim_start().to_owned())
        };
        let sql = match after(sql, "WITH") {
            Some(rest) => match after(&rest, "RECURSIVE") {
                Some(rest) => format!("WITH RECURSIVE {ctes}, {rest}"),
                None => format!("WITH {ctes}, {rest}"),
            },
            None => format!("WITH {ctes} {sql}"),
        };
        Statement {
            sql: Cow::Owned(sql),
            values,
        }
    }

    pub(super) fn arguments<DB>(&self) -> Result<DB::Arguments, BoxDynError>
    where
        DB: Database,
        Option<Uuid>: for<'t> Encode<'t, DB> + Type<DB>,
        for<'s> Option<&'s str>: Encode<'s, DB> + Type<DB>,
        Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
        Option<i32>: for<'t> Encode<'t, DB> + Type<DB>,
        Option<bool>: for<'t> Encode<'t, DB> + Type<DB>,
        Option<DateTime<Utc>>: for<'t> Encode<'t, DB> + Type<DB>,
        for<'s> sqlx::types::Json<&'s RawValue>: Encode<'s, DB> + Type<DB>,
        for<'s> Option<&'s [u8]>: Encode<'s, DB> + Type<DB>,
    {
        let mut args = DB::Arguments::default();
        for value in &self.values {
            match value {
                Value::Uuid(v) => args.add(*v)?,
                Value::Text(v) => args.add(v.as_deref())?,
                Value::Int(v) => args.add(*v)?,
                Value::Int32(v) => args.add(*v)?,
                Value::Bool(v) => args.add(*v)?,
                Value::Time(v) => args.add(*v)?,
                Value::Json(v) => args.add(sqlx::types::Json(&**v))?,
                Value::Bytes(v) => args.add(v.as_deref())?,
            }
        }
        Ok(args)
    }
}

/// What an [`Statement::insert`] or [`Statement::update`] column receives.
pub enum Column<'q> {
    Value(Value<'q>),
    /// A SQL expression, such as a backend's way of drawing the next number.
    Sql(String),
}

/// `column` receives `value`.
pub fn col<'q>(name: &'static str, value: impl Into<Value<'q>>) -> (&'static str, Column<'q>) {
    (name, Column::Value(value.into()))
}

/// A row type both backends can decode (derived `FromRow` structs and tuples).
pub trait RowType:
    for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}
impl<T> RowType for T where
    T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

pub(super) fn bad_arguments(err: BoxDynError) -> StoreError {
    StoreError::Database(sqlx::Error::Encode(err))
}

/// Runs `$statement` as `$method` (a sqlx query method) on `$on` with the backend's
/// argument type: one arm per backend, the same code in each.
macro_rules! run {
    // On a connection leased from the primary's pool for this one statement.
    (leased $pool:expr, $statement:expr, $method:ident) => {{
        let mut lease = $pool.get().await?;
        let out = run!(Postgres, $statement, lease.busy(), $method);
        lease.done();
        out
    }};
    ($db:ty, $statement:expr, $on:expr, execute) => {{
        let statement = $statement;
        let args = statement.arguments::<$db>().map_err(bad_arguments)?;
        sqlx::query_with(sqlx::AssertSqlSafe(statement.sql), args)
            .execute($on)
            .await?
            .rows_affected()
    }};
    ($db:ty, $statement:expr, $on:expr, $method:ident) => {{
        let statement = $statement;
        let args = statement.arguments::<$db>().map_err(bad_arguments)?;
        sqlx::query_as_with(sqlx::AssertSqlSafe(statement.sql), args)
            .$method($on)
            .await?
    }};
}

pub(super) use run;

/// Where a statement runs: the store's pools (reads on a reader, writes on the writer),
/// a standby if one can serve the read ([`Pools::routed`]), or an open transaction.
pub enum On<'a> {
    Pools(&'a Pools),
    Routed(&'a Pools),
    Tx(&'a mut Tx),
}

impl<'a> From<&'a Pools> for On<'a> {
    fn from(pools: &'a Pools) -> Self {
        On::Pools(pools)
    }
}

impl<'a> From<&'a mut Tx> for On<'a> {
    fn from(tx: &'a mut Tx) -> Self {
        On::Tx(tx)
    }
}

/// The connections of one store.
#[derive(Clone)]
pub enum Pools {
    /// One pool for the primary: PostgreSQL handles concurrent writers itself. Standbys,
    /// when configured, take the reads that [`Pools::routed`] marks.
    Postgres {
        pool: ConnectionPool,
        standbys: Option<Arc<Standbys>>,
    },
    /// Several readers beside exactly one writer: SQLite admits one writer at a time
    /// anyway, and queueing writers in the pool instead of in SQLite's busy handler
    /// avoids SQLITE_BUSY when a read transaction would have to upgrade to a write.
    Sqlite {
        reader: SqlitePool,
        writer: SqlitePool,
    },
}

impl Pools {
    pub fn dialect(&self) -> Dialect {
        match self {
            Pools::Postgres { .. } => Dialect::Postgres,
            Pools::Sqlite { .. } => Dialect::Sqlite,
        }
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> StoreResult<Tx> {
        Ok(match self {
            Pools::Postgres { pool, .. } => {
                let mut lease = pool.get().await?;
                lease.begin().await?;
                Tx::postgres(lease)
            }
            Pools::Sqlite { writer, .. } => Tx::sqlite(writer.begin().await?),
        })
    }

    /// Runs a write outside any transaction of ours (one statement, committed alone).
    pub async fn write(&self, statement: Statement<'_>) -> StoreResult<u64> {
        Ok(match self {
            Pools::Postgres { pool, .. } => {
                let touched = run!(leased pool, statement, execute);
                note_write();
                touched
            }
            Pools::Sqlite { writer, .. } => run!(Sqlite, statement, writer, execute),
        })
    }

    pub async fn fetch_all<R: RowType>(&self, statement: Statement<'_>) -> StoreResult<Vec<R>> {
        Ok(match self {
            Pools::Postgres { pool, .. } => run!(leased pool, statement, fetch_all),
            Pools::Sqlite { reader, .. } => run!(Sqlite, statement, reader, fetch_all),
        })
    }

    pub async fn fetch_optional<R: RowType>(
        &self,
        statement: Statement<'_>,
    ) -> StoreResult<Option<R>> {
        Ok(match self {
            Pools::Postgres { pool, .. } => run!(leased pool, statement, fetch_optional),
            Pools::Sqlite { reader, .. } => run!(Sqlite, statement, reader, fetch_optional),
        })
    }

    pub async fn fetch_one<R: RowType>(&self, statement: Statement<'_>) -> StoreResult<R> {
        Ok(match self {
            Pools::Postgres { pool, .. } => run!(leased pool, statement, fetch_one),
            Pools::Sqlite { reader, .. } => run!(Sqlite, statement, reader, fetch_one),
        })
    }

    /// Connections open and idle, over all pools.
    pub fn stats(&self) -> (u32, u32) {
        match self {
            Pools::Postgres { pool, .. } => pool.stats(),
            Pools::Sqlite { reader, writer } => (
                reader.size() + writer.size(),
                (reader.num_idle() + writer.num_idle()) as u32,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_writes_become_ctes_of_the_statement_they_precede() {
        let first = Statement::new("INSERT INTO a (x) VALUES ($1)").bind(1i64);
        let second = Statement::new("INSERT INTO b (y, z) VALUES ($1, $2)")
            .bind(2i64)
            .bind("two".to_owned());
        let main = Statement::new("INSERT INTO c (w) VALUES ($1) RETURNING id").bind(3i64);
        let merged = main.after(vec![first.into_owned(), second.into_owned()]);
        assert_eq!(
            merged.sql,
            "WITH deferred_0 AS (INSERT INTO a (x) VALUES ($2)), \
             deferred_1 AS (INSERT INTO b (y, z) VALUES ($3, $4)) \
             INSERT INTO c (w) VALUES ($1) RETURNING id"
        );
        let values: Vec<_> = merged.values.iter().map(|v| format!("{v:?}")).collect();
        assert_eq!(
            values,
            [
                "Int(Some(3))",
                "Int(Some(1))",
                "Int(Some(2))",
                "Text(Some(\"two\"))"
            ]
        );
        // A statement with CTEs of its own keeps them, after the held ones.
        let with = Statement::new("with x AS (SELECT $1) SELECT * FROM x").bind(9i64);
        let held = Statement::new("DELETE FROM d WHERE id = $1").bind(8i64);
        assert_eq!(
            with.after(vec![held.into_owned()]).sql,
            "WITH deferred_0 AS (DELETE FROM d WHERE id = $2), x AS (SELECT $1) SELECT * FROM x"
        );
        let recursive =
            Statement::new("WITH\n  RECURSIVE r AS (SELECT $1) SELECT * FROM r").bind(1i64);
        let held = Statement::new("DELETE FROM d WHERE id = $1").bind(8i64);
        assert_eq!(
            recursive.after(vec![held.into_owned()]).sql,
            "WITH RECURSIVE deferred_0 AS (DELETE FROM d WHERE id = $2), r AS (SELECT $1) SELECT * FROM r"
        );
        // What the renumbering cannot read is not held back.
        for tricky in [
            "SELECT $$ $1 $$",
            "SELECT E'it\\'s', $1",
            "SELECT 1 -- it's",
            "SELECT /* ' */ $1",
        ] {
            assert!(!Statement::new(tricky).mergeable(), "{tricky}");
        }
        assert!(Statement::new("INSERT INTO t VALUES ($1, E'\\n')").mergeable());
        // Nothing held: the statement as it is.
        let alone = Statement::new("SELECT 1");
        assert_eq!(alone.after(Vec::new()).sql, "SELECT 1");
    }
}
