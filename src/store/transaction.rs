//! An open write transaction, and the writes it holds back on PostgreSQL.
//!
//! A write whose outcome nothing in the transaction reads (an address remembered, tags,
//! the search document, SLA clocks) may be [deferred](Tx::defer). On PostgreSQL it is
//! then sent with the next statement that takes it along ([`Tx::fetch_all_after`],
//! [`Tx::execute_after`]: the held writes become data-modifying CTEs of that statement),
//! or, before any other statement and before the commit, as one statement of their own.
//! A ticket's creation thus costs four round trips (begin, contact, everything else,
//! commit) instead of up to nine. On SQLite, where a statement is a function call, a
//! deferred write runs at once.

use sqlx::{Postgres, Sqlite};

use super::StoreResult;
use super::database::{RowType, Statement, bad_arguments, run};
use super::dialect::Dialect;
use super::pg_pool::Lease;
use super::replicas::note_write;

/// Most writes held back at once; more are sent on their own first.
const MAX_DEFERRED: usize = 16;
/// Most parameters one merged statement may bind (PostgreSQL's limit is 65,535).
const MAX_PARAMETERS: usize = 30_000;

/// An open write transaction; dropped without [`Tx::commit`], it rolls back.
pub struct Tx {
    conn: Conn,
    /// Deferred writes, in order (PostgreSQL only).
    deferred: Vec<Statement<'static>>,
}

enum Conn {
    /// A connection on which `BEGIN` was sent.
    Postgres(Lease),
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

impl Tx {
    pub(super) fn postgres(tx: Lease) -> Tx {
        Tx {
            conn: Conn::Postgres(tx),
            deferred: Vec::new(),
        }
    }

    pub(super) fn sqlite(tx: sqlx::Transaction<'static, Sqlite>) -> Tx {
        Tx {
            conn: Conn::Sqlite(tx),
            deferred: Vec::new(),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.conn {
            Conn::Postgres(_) => Dialect::Postgres,
            Conn::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Runs a write whose outcome nothing reads: on PostgreSQL, later (see the module
    /// documentation), so its errors surface with the statement that sends it. Nothing in
    /// the transaction may read what it writes before the commit except through a
    /// statement that is not taken along with it, and no other deferred write may change
    /// the same rows.
    pub async fn defer(&mut self, statement: Statement<'_>) -> StoreResult<()> {
        match self.conn {
            // SQL whose placeholders cannot be renumbered safely runs at once.
            Conn::Postgres(_) if statement.mergeable() => {
                if self.deferred.len() >= MAX_DEFERRED
                    || self.held_parameters() + statement.parameters() > MAX_PARAMETERS
                {
                    self.flush().await?;
                }
                self.deferred.push(statement.into_owned());
                Ok(())
            }
            _ => self.execute(statement).await.map(drop),
        }
    }

    fn held_parameters(&self) -> usize {
        self.deferred.iter().map(Statement::parameters).sum()
    }

    /// Sends the deferred writes: as one statement (each held write alone stays under
    /// [`MAX_PARAMETERS`], and so does what `defer` lets them add up to).
    async fn flush(&mut self) -> StoreResult<()> {
        let mut deferred = std::mem::take(&mut self.deferred);
        let Some(last) = deferred.pop() else {
            return Ok(());
        };
        if let Conn::Postgres(tx) = &mut self.conn {
            let statement = last.after(deferred);
            run!(Postgres, statement, tx.busy(), execute);
        }
        Ok(())
    }

    /// Every row of `statement`, sent with the deferred writes ahead of it: it must not
    /// read what they write.
    pub async fn fetch_all_after<R: RowType>(
        &mut self,
        statement: Statement<'_>,
    ) -> StoreResult<Vec<R>> {
        let statement = self.with_deferred(statement).await?;
        self.fetch_all(statement).await
    }

    /// The rows `statement` changed (not counting the deferred writes sent ahead of it
    /// as its CTEs): it must not read what they write.
    pub async fn execute_after(&mut self, statement: Statement<'_>) -> StoreResult<u64> {
        let statement = self.with_deferred(statement).await?;
        self.execute(statement).await
    }

    /// `statement` with the deferred writes as its CTEs, unless together they would bind
    /// too many parameters: those are then sent first, on their own.
    async fn with_deferred<'q>(&mut self, statement: Statement<'q>) -> StoreResult<Statement<'q>> {
        if self.held_parameters() + statement.parameters() > MAX_PARAMETERS {
            self.flush().await?;
        }
        Ok(statement.after(std::mem::take(&mut self.deferred)))
    }

    pub async fn execute(&mut self, statement: Statement<'_>) -> StoreResult<u64> {
        self.flush().await?;
        Ok(match &mut self.conn {
            Conn::Postgres(tx) => run!(Postgres, statement, tx.busy(), execute),
            Conn::Sqlite(tx) => run!(Sqlite, statement, &mut **tx, execute),
        })
    }

    pub async fn fetch_all<R: RowType>(&mut self, statement: Statement<'_>) -> StoreResult<Vec<R>> {
        self.flush().await?;
        Ok(match &mut self.conn {
            Conn::Postgres(tx) => run!(Postgres, statement, tx.busy(), fetch_all),
            Conn::Sqlite(tx) => run!(Sqlite, statement, &mut **tx, fetch_all),
        })
    }

    pub async fn fetch_optional<R: RowType>(
        &mut self,
        statement: Statement<'_>,
    ) -> StoreResult<Option<R>> {
        self.flush().await?;
        Ok(match &mut self.conn {
            Conn::Postgres(tx) => run!(Postgres, statement, tx.busy(), fetch_optional),
            Conn::Sqlite(tx) => run!(Sqlite, statement, &mut **tx, fetch_optional),
        })
    }

    pub async fn fetch_one<R: RowType>(&mut self, statement: Statement<'_>) -> StoreResult<R> {
        self.flush().await?;
        Ok(match &mut self.conn {
            Conn::Postgres(tx) => run!(Postgres, statement, tx.busy(), fetch_one),
            Conn::Sqlite(tx) => run!(Sqlite, statement, &mut **tx, fetch_one),
        })
    }

    pub async fn commit(mut self) -> StoreResult<()> {
        self.flush().await?;
        match self.conn {
            Conn::Postgres(mut tx) => {
                tx.commit().await?;
                note_write();
            }
            Conn::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Rolls back; deferred writes are dropped unsent.
    pub async fn rollback(self) -> StoreResult<()> {
        match self.conn {
            Conn::Postgres(mut tx) => tx.rollback().await?,
            Conn::Sqlite(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}
