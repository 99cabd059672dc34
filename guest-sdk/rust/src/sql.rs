//! SQL for classes deployed with storage="sqlite" (abi/README.md, section 5 "SQL";
//! abi/sql.cddl).
//!
//! ```ignore
//! use dohost::sql::{self, Value};
//!
//! let res = sql::exec(
//!     "SELECT name, party FROM bookings WHERE table_no = ? AND slot = ?",
//!     &[Value::from(3), Value::from("2026-12-24T19:00")],
//! )?;
//! for row in &res.rows {
//!     let name = row[0].as_text().unwrap_or("");
//!     let party = row[1].as_int().unwrap_or(0);
//! }
//! ```
//!
//! One call runs one statement with bound parameters inside the event's transaction: it
//! sees the event's own KV and SQL writes and commits (or rolls back) with them. Errors:
//! `Error::SQL_ERROR` (SQLite rejected the statement: syntax, a constraint; it undid
//! itself and the event may go on), `Error::SQL_REFUSED` (something guests may not do:
//! BEGIN, ATTACH, most pragmas, the host's `_dohost_*` tables...), `Error::NOT_SUPPORTED`
//! (the class uses the kv backend), `Error::INVALID_ARGUMENT` (text above 100,000 bytes,
//! more than 100 parameters, a count that does not match the placeholders),
//! `LIMIT_EXCEEDED`, `QUOTA_EXCEEDED`. `err.detail()` has the host's message (SQLite's own
//! for `SQL_ERROR`).

use crate::cbor::{Decoder, Encoder, Type};
use crate::{raw, take_output, Error, Result, SCRATCH};

/// One parameter or result value: SQLite's storage classes. A float NaN is stored as NULL.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// An integer or a float, as f64.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_blob(&self) -> Option<&[u8]> {
        match self {
            Value::Blob(b) => Some(b),
            _ => None,
        }
    }

    fn encode(&self, e: &mut Encoder) {
        match self {
            Value::Null => e.null(),
            Value::Int(i) => e.int(*i),
            Value::Float(f) => e.float(*f),
            Value::Text(s) => e.text(s),
            Value::Blob(b) => e.bytes(b),
        };
    }

    fn decode(d: &mut Decoder) -> Result<Value> {
        Ok(match d.peek() {
            Type::UInt | Type::NInt => Value::Int(d.int()?),
            Type::Float => Value::Float(d.float()?),
            Type::Text => Value::Text(d.text()?.into()),
            Type::Bytes => Value::Blob(d.bytes()?.to_vec()),
            Type::Null => {
                d.null()?;
                Value::Null
            }
            _ => return Err(Error::SDK_DECODE),
        })
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(v as i64)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.into())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Blob(v.to_vec())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// The result of one statement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqlResult {
    /// The result columns' names (empty for a statement that returns none).
    pub columns: Vec<String>,
    /// One `Vec` per row, one value per column.
    pub rows: Vec<Vec<Value>>,
    /// What the host metered: rows returned, or SQLite's full-scan steps when more.
    pub rows_read: u64,
    /// Rows inserted, updated or deleted (triggers' included).
    pub rows_written: u64,
}

impl SqlResult {
    /// The index of the column with this name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    fn decode(input: &[u8]) -> Result<SqlResult> {
        let mut d = Decoder::new(input);
        let mut r = SqlResult::default();
        for _ in 0..d.map()? {
            match d.text()? {
                "columns" => {
                    let n = d.array()?;
                    r.columns.reserve(n);
                    for _ in 0..n {
                        r.columns.push(d.text()?.into());
                    }
                }
                "rows" => {
                    let n = d.array()?;
                    r.rows.reserve(n);
                    for _ in 0..n {
                        let width = d.array()?;
                        let mut row = Vec::with_capacity(width);
                        for _ in 0..width {
                            row.push(Value::decode(&mut d)?);
                        }
                        r.rows.push(row);
                    }
                }
                "rows_read" => r.rows_read = d.uint()?,
                "rows_written" => r.rows_written = d.uint()?,
                _ => d.skip()?, // sql.cddl may grow
            }
        }
        if !d.done() {
            return Err(Error::SDK_DECODE);
        }
        Ok(r)
    }
}

/// Runs one statement with `params` bound to its placeholders (?, ?NNN, :name, @name,
/// $name in order of appearance). Bind values; never splice them into the text.
pub fn exec(statement: &str, params: &[Value]) -> Result<SqlResult> {
    let mut e = Encoder::new();
    if !params.is_empty() {
        e.array(params.len());
        for p in params {
            p.encode(&mut e);
        }
    }
    let input = e.finish();
    let out = take_output(SCRATCH, |p, cap| unsafe {
        raw::sql_exec(statement.as_ptr(), statement.len(), input.as_ptr(), input.len(), p, cap)
    })?;
    SqlResult::decode(&out)
}
