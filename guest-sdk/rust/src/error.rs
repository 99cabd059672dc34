//! Status codes (abi/README.md section 6) as a Rust error type.

use core::fmt;

use crate::cbor::Decoder;
use crate::{raw, take_output, SCRATCH};

/// An ABI error code (always negative), or one of the SDK's own (<= -100).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Error(i32);

/// `Result<T, dohost::Error>`.
pub type Result<T> = core::result::Result<T, Error>;

const NAMES: [&str; 19] = [
    "internal",
    "bad_pointer",
    "not_found",
    "key_too_large",
    "value_too_large",
    "too_many_keys",
    "quota_exceeded",
    "bad_encoding",
    "not_supported",
    "no_result",
    "invalid_argument",
    "storage_error",
    "buffer_too_small",
    "limit_exceeded",
    "call_cycle",
    "call_depth",
    "call_failed",
    "sql_error",
    "sql_refused",
];

impl Error {
    pub const INTERNAL: Error = Error(-1);
    pub const BAD_POINTER: Error = Error(-2);
    pub const NOT_FOUND: Error = Error(-3);
    pub const KEY_TOO_LARGE: Error = Error(-4);
    pub const VALUE_TOO_LARGE: Error = Error(-5);
    pub const TOO_MANY_KEYS: Error = Error(-6);
    pub const QUOTA_EXCEEDED: Error = Error(-7);
    pub const BAD_ENCODING: Error = Error(-8);
    pub const NOT_SUPPORTED: Error = Error(-9);
    pub const NO_RESULT: Error = Error(-10);
    pub const INVALID_ARGUMENT: Error = Error(-11);
    pub const STORAGE_ERROR: Error = Error(-12);
    pub const BUFFER_TOO_SMALL: Error = Error(-13);
    pub const LIMIT_EXCEEDED: Error = Error(-14);
    /// The call would wait for an event that waits for the caller (the message names the chain).
    pub const CALL_CYCLE: Error = Error(-15);
    /// The call chain would be more than 16 calls deep.
    pub const CALL_DEPTH: Error = Error(-16);
    /// The call could not be made: no such class, an invalid id, the host shutting down.
    pub const CALL_FAILED: Error = Error(-17);
    /// SQLite rejected or failed the statement; the message is SQLite's.
    pub const SQL_ERROR: Error = Error(-18);
    /// The statement does something guests may not (BEGIN, ATTACH, the host's tables...).
    pub const SQL_REFUSED: Error = Error(-19);
    /// SDK: guest memory could not grow.
    pub const NO_MEMORY: Error = Error(-100);
    /// SDK: what the host sent could not be decoded.
    pub const SDK_DECODE: Error = Error(-101);

    /// An error with any code; 0 and positive codes become `INTERNAL`'s -1 only when they
    /// reach an export (a handler's `Err(Error::from_code(7))` makes the export return 7).
    pub const fn from_code(code: i32) -> Error {
        Error(code)
    }

    pub const fn code(self) -> i32 {
        self.0
    }

    /// The stable name: "not_found", "out_of_memory", ... or "unknown".
    pub fn name(self) -> &'static str {
        status_name(self.0)
    }

    /// The detail the host keeps for the last failed import of this event.
    pub fn detail(self) -> Result<ErrorDetail> {
        last_error()
    }
}

/// A status from an import: `Ok(n)` for n >= 0, the error otherwise.
#[inline]
pub fn check(status: i32) -> Result<u32> {
    if status < 0 {
        Err(Error(status))
    } else {
        Ok(status as u32)
    }
}

/// The stable name of a status: "ok" for >= 0, "not_found", ..., "unknown".
pub fn status_name(status: i32) -> &'static str {
    match status {
        s if s >= 0 => "ok",
        -100 => "out_of_memory",
        -101 => "sdk_decode",
        s if s >= -(NAMES.len() as i32) => NAMES[(-s - 1) as usize],
        _ => "unknown",
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({} {})", self.0, self.name())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Error {}

impl From<crate::cbor::DecodeError> for Error {
    fn from(_: crate::cbor::DecodeError) -> Error {
        Error::SDK_DECODE
    }
}

/// The detail of a failed import (abi/error.cddl).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: i32,
    pub name: String,
    pub message: String,
}

/// The detail of the last failed import of this event; `Err(NO_RESULT)` when none failed.
pub fn last_error() -> Result<ErrorDetail> {
    let out = take_output(SCRATCH, |p, cap| unsafe { raw::last_error(p, cap) })?;
    let mut d = Decoder::new(&out);
    let mut detail = ErrorDetail { code: 0, name: String::new(), message: String::new() };
    for _ in 0..d.map()? {
        match d.text()? {
            "code" => detail.code = d.int()? as i32,
            "name" => detail.name = d.text()?.into(),
            "message" => detail.message = d.text()?.into(),
            _ => d.skip()?,
        }
    }
    if !d.done() {
        return Err(Error::SDK_DECODE);
    }
    Ok(detail)
}
