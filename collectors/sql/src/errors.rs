//! The drivers' errors as [`CollectorError`]s of the right kind, with
//! hints where one helps, and never a password.

use std::time::Duration;

use carat_collector::redact::{redact_secret, redact_urls};
use carat_collector::CollectorError;
use sqlx::error::DatabaseError;
use sqlx::mysql::MySqlDatabaseError;
use sqlx::sqlite::SqliteError;

use crate::database::RunError;
use crate::mysql;
use crate::postgres;

/// SQLSTATE of a write refused by a read-only transaction (PostgreSQL, and
/// MySQL's error 1792).
const READ_ONLY_TRANSACTION: &str = "25006";
/// SQLite's result codes: a write to a database opened read-only, and a
/// statement interrupted (by the timeout's progress handler).
const SQLITE_READONLY: i32 = 8;
const SQLITE_INTERRUPT: i32 = 9;
/// Login refused: PostgreSQL's SQLSTATEs and MySQL's error number.
const PG_LOGIN_REFUSED: [&str; 2] = ["28P01", "28000"];
const MYSQL_ACCESS_DENIED: u16 = 1045;

/// Where errors come from, to name it and to keep its secret out. (No
/// `Debug`: it holds the password.)
pub struct Context {
    /// The database as configured, its password replaced.
    pub target: String,
    /// The password, to scrub from any message that would echo it.
    pub password: Option<String>,
}

impl Context {
    /// `message` without the password or a URL's password.
    fn clean(&self, message: &str) -> String {
        let message = redact_urls(message);
        match self.password.as_deref() {
            Some(p) if !p.is_empty() => redact_secret(&message, p).into_owned(),
            _ => message.into_owned(),
        }
    }

    /// Connecting (or checking an open connection) failed.
    pub fn connect_error(&self, e: &sqlx::Error, connect_timeout: Duration) -> CollectorError {
        let target = self.target.clone();
        match e {
            sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                CollectorError::timeout(
                    target,
                    format!("connecting took more than {connect_timeout:?}"),
                )
            }
            sqlx::Error::Io(io) => CollectorError::connect(target, self.clean(&io.to_string())),
            sqlx::Error::Tls(t) => CollectorError::tls(target, self.clean(&t.to_string())),
            sqlx::Error::Database(db) if login_refused(db.as_ref()) => CollectorError::status(
                target,
                None,
                format!(
                    "{}; check the user and its password (password, password_file or the URL)",
                    self.clean(db.message())
                ),
            ),
            sqlx::Error::Database(db) => {
                CollectorError::status(target, None, self.clean(db.message()))
            }
            other => CollectorError::connect(target, self.clean(&other.to_string())),
        }
    }

    /// A query failed; `origin` is where (the database, and the query when
    /// the error is not reported as the query's own failed part).
    pub fn query_error(&self, origin: String, e: &RunError, timeout: Duration) -> CollectorError {
        let e = match e {
            RunError::TooManyRows(max) => {
                return CollectorError::Limit(format!(
                    "{origin}: returned more than {max} rows (max_rows); aggregate in the query, or raise max_rows"
                ))
            }
            RunError::Sql(e) => e,
        };
        match e {
            sqlx::Error::Database(db) if timed_out(db.as_ref()) => CollectorError::timeout(
                origin,
                format!("cancelled by the database after its timeout of {timeout:?}"),
            ),
            sqlx::Error::Database(db) if read_only_refused(db.as_ref()) => CollectorError::status(
                origin,
                None,
                format!(
                    "{}: carat runs every query read-only; a query may not write",
                    self.clean(db.message())
                ),
            ),
            sqlx::Error::Database(db) => {
                CollectorError::status(origin, None, self.clean(db.message()))
            }
            sqlx::Error::Io(io) => CollectorError::Other(
                format!(
                    "{origin}: the connection failed: {}",
                    self.clean(&io.to_string())
                )
                .into(),
            ),
            other => CollectorError::Other(
                format!("{origin}: {}", self.clean(&other.to_string())).into(),
            ),
        }
    }
}

/// The error says the query ran past its time limit on the server.
fn timed_out(db: &dyn DatabaseError) -> bool {
    if let Some(m) = db.try_downcast_ref::<MySqlDatabaseError>() {
        return mysql::TIMEOUT_ERRORS.contains(&m.number());
    }
    sqlite_code(db) == Some(SQLITE_INTERRUPT)
        || db.code().as_deref() == Some(postgres::QUERY_CANCELED)
}

/// The error says the query tried to write.
fn read_only_refused(db: &dyn DatabaseError) -> bool {
    sqlite_code(db) == Some(SQLITE_READONLY) || db.code().as_deref() == Some(READ_ONLY_TRANSACTION)
}

fn login_refused(db: &dyn DatabaseError) -> bool {
    if let Some(m) = db.try_downcast_ref::<MySqlDatabaseError>() {
        return m.number() == MYSQL_ACCESS_DENIED;
    }
    db.code()
        .is_some_and(|c| PG_LOGIN_REFUSED.contains(&c.as_ref()))
}

/// The primary result code of a SQLite error (the low byte of its
/// extended result code).
fn sqlite_code(db: &dyn DatabaseError) -> Option<i32> {
    let e = db.try_downcast_ref::<SqliteError>()?;
    e.code()?.parse::<i32>().ok().map(|c| c & 0xff)
}

/// The query failed because the connection did: it must be opened again.
pub fn connection_lost(e: &RunError) -> bool {
    matches!(
        e,
        RunError::Sql(
            sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed
        )
    )
}
