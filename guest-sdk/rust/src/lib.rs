//! Rust guest SDK for dohost, guest ABI v1 (abi/README.md).
//!
//! Write a type that implements [`DurableObject`] and export it:
//!
//! ```ignore
//! use dohost::{DurableObject, Request, Response, Result};
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl DurableObject for Hello {
//!     fn fetch(&mut self, req: Request) -> Result<Response> {
//!         Ok(Response::text(200, format!("hello from {}\n", req.path)))
//!     }
//! }
//!
//! dohost::export_object!(Hello);
//! ```
//!
//! `export_object!(T)` defines the exports `dohost_abi_v1` and `dohost_fetch`; name the
//! optional methods you implement to export them too: `export_object!(T, init, alarm)`,
//! and for WebSockets `websocket_message` (+ `websocket_close`, `websocket_error`).
//! One value of `T` (made with `Default`) lives for the activation; the host may drop the
//! activation between any two events, so durable state belongs in [`storage`].
//!
//! Modules: [`storage`] (keys and values), [`alarm`], [`call`] (other objects of the
//! tenant, `Request::caller`), [`sql`] (SQL on a class deployed with storage="sqlite"),
//! [`ws`] (WebSockets), [`log`], [`raw`] (the imports themselves).
//!
//! A handler's `Err(e)` fails the event: its storage writes are rolled back and the
//! caller gets 500 (`?` on any SDK call does that). A panic traps, with the same effect;
//! its message goes to the object's log.
//!
//! The SDK has no dependencies and builds with Debian's rustc 1.63:
//!
//! ```text
//! rustc --edition 2021 --crate-type rlib --crate-name dohost --target wasm32-unknown-unknown \
//!     -C opt-level=s -C panic=abort guest-sdk/rust/src/lib.rs -o libdohost.rlib
//! rustc --edition 2021 --crate-type cdylib --target wasm32-unknown-unknown -C opt-level=s \
//!     -C panic=abort -C lto -C linker=wasm-ld --extern dohost=libdohost.rlib app.rs -o app.wasm
//! ```

pub mod bookmark;
pub mod call;
pub mod cbor;
mod error;
mod http;
pub mod raw;
pub mod sql;
pub mod storage;
pub mod ws;

pub use error::{check, last_error, status_name, Error, ErrorDetail, Result};
pub use http::{percent_decode, respond, Request, Response};

/// Free space offered to an import that returns bytes before falling back to
/// `result_read` (abi/README.md section 2).
pub(crate) const SCRATCH: usize = 4096;
const RANDOM_MAX_CALL: usize = 65536;

/// The output-buffer rule: `call(ptr, cap)` writes a result of length n when n <= cap;
/// otherwise the host keeps it and we read it with `result_read` into a buffer of n bytes.
/// A result that fits is kept in place (no copy).
pub(crate) fn take_output(cap: usize, call: impl FnOnce(*mut u8, usize) -> i32) -> Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(cap);
    let n = check(call(buf.as_mut_ptr(), buf.capacity()))? as usize;
    if n <= buf.capacity() {
        unsafe { buf.set_len(n) };
        if buf.capacity() > n + n / 2 + 64 {
            buf.shrink_to_fit(); // shrinks in place
        }
        return Ok(buf);
    }
    drop(buf);
    let mut big: Vec<u8> = Vec::with_capacity(n);
    let got = check(unsafe { raw::result_read(big.as_mut_ptr(), n) })? as usize;
    if got != n {
        return Err(Error::SDK_DECODE);
    }
    unsafe { big.set_len(n) };
    Ok(big)
}

/// The alarm that fired (abi/alarm.cddl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlarmInfo {
    /// The time the alarm was set for, ms since the Unix epoch.
    pub scheduled_ms: i64,
    /// 0 on the first run, n on the n-th retry.
    pub retry_count: u64,
    pub is_retry: bool,
}

impl AlarmInfo {
    fn decode(input: &[u8]) -> Result<AlarmInfo> {
        let mut d = cbor::Decoder::new(input);
        let mut info = AlarmInfo::default();
        for _ in 0..d.map()? {
            match d.text()? {
                "scheduled_ms" => info.scheduled_ms = d.int()?,
                "retry_count" => info.retry_count = d.uint()?,
                "is_retry" => info.is_retry = d.bool()?,
                _ => d.skip()?,
            }
        }
        if !d.done() {
            return Err(Error::SDK_DECODE);
        }
        Ok(info)
    }
}

/// A durable object class. One value (from `Default`) serves every event of an
/// activation, one event at a time.
pub trait DurableObject: Default {
    /// An HTTP-shaped request arrived. The response you return is sent once the event's
    /// writes are durable; `Err` fails the event (writes rolled back, caller gets 500).
    fn fetch(&mut self, req: Request) -> Result<Response>;

    /// Runs once per activation before its first event, if exported with
    /// `export_object!(T, init)`. Storage works; writes join the first event's transaction.
    fn init(&mut self) -> Result<()> {
        Ok(())
    }

    /// The object's alarm fired (see [`alarm`]), if exported with
    /// `export_object!(T, alarm)`. `Err` rolls back its writes and schedules a retry (with
    /// backoff; a new alarm the failing handler set replaces the retry).
    fn alarm(&mut self, _info: AlarmInfo) -> Result<()> {
        Ok(())
    }

    /// A message arrived on one of the object's WebSocket connections (see [`ws`]), if
    /// exported with `export_object!(T, websocket_message)`, which is also what lets
    /// `ws::accept` succeed. `Err` fails the event (writes rolled back, sends dropped); the
    /// connection stays open.
    fn websocket_message(&mut self, _msg: ws::Message) -> Result<()> {
        Ok(())
    }

    /// A connection the client ended, or that failed, if exported with
    /// `export_object!(T, websocket_close)`. Not called for connections the object closed.
    fn websocket_close(&mut self, _ev: ws::Close) -> Result<()> {
        Ok(())
    }

    /// A connection failed (its close event follows), if exported with
    /// `export_object!(T, websocket_error)`.
    fn websocket_error(&mut self, _ev: ws::Failure) -> Result<()> {
        Ok(())
    }
}

/// Logging: the text goes to the host log tagged with the object, when the event ends.
/// Lines above 16 KiB are truncated.
pub mod log {
    use crate::{check, raw, Result};

    pub const DEBUG: i32 = 0;
    pub const INFO: i32 = 1;
    pub const WARN: i32 = 2;
    pub const ERROR: i32 = 3;

    /// Logs at any level (0..=3; another level is `invalid_argument`).
    pub fn write(level: i32, text: &[u8]) -> Result<()> {
        check(unsafe { raw::log(level, text.as_ptr(), text.len()) })?;
        Ok(())
    }
    pub fn debug(text: &str) {
        let _ = write(DEBUG, text.as_bytes());
    }
    pub fn info(text: &str) {
        let _ = write(INFO, text.as_bytes());
    }
    pub fn warn(text: &str) {
        let _ = write(WARN, text.as_bytes());
    }
    pub fn error(text: &str) {
        let _ = write(ERROR, text.as_bytes());
    }
}

/// The object's one alarm (abi/README.md, "Alarms"): a time in ms since the Unix epoch
/// at which the host runs `DurableObject::alarm` (export it with `export_object!(T, alarm)`).
/// Changes are part of the event's transaction; inside the alarm handler `get` reports no
/// alarm unless the handler set a new one.
pub mod alarm {
    use crate::{check, raw, Result};

    /// Sets (replaces) the alarm; a time in the past fires at once. A negative time is
    /// `INVALID_ARGUMENT`.
    pub fn set(time_ms: i64) -> Result<()> {
        check(unsafe { raw::alarm_set(time_ms) })?;
        Ok(())
    }

    /// Sets the alarm `ms` milliseconds from now.
    pub fn set_in(ms: i64) -> Result<()> {
        set(crate::now_ms().saturating_add(ms))
    }

    /// The alarm's time, or `None` when none is set.
    pub fn get() -> Result<Option<i64>> {
        let mut le = [0u8; 8];
        match check(unsafe { raw::alarm_get(le.as_mut_ptr()) })? {
            1 => Ok(Some(i64::from_le_bytes(le))),
            _ => Ok(None),
        }
    }

    /// Deletes the alarm (no error when none is set).
    pub fn delete() -> Result<()> {
        check(unsafe { raw::alarm_delete() })?;
        Ok(())
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    unsafe { raw::now_ms() }
}

/// Fills `buf` with cryptographically secure bytes (any length; split into host calls).
pub fn random_fill(buf: &mut [u8]) -> Result<()> {
    for chunk in buf.chunks_mut(RANDOM_MAX_CALL) {
        check(unsafe { raw::random_fill(chunk.as_mut_ptr(), chunk.len()) })?;
    }
    Ok(())
}

/// `n` cryptographically secure random bytes.
pub fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    random_fill(&mut v)?;
    Ok(v)
}

/// Parses an optional sign and decimal digits, allowing surrounding spaces, tabs, CR and
/// LF. `None` on anything else, on no digits, or on overflow.
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    let is_space = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let start = text.iter().position(|c| !is_space(c))?;
    let end = text.iter().rposition(|c| !is_space(c))? + 1;
    let s = &text[start..end];
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = (c - b'0') as i64;
        // Accumulate negatively so that i64::MIN parses.
        v = v.checked_mul(10)?.checked_sub(d)?;
    }
    if neg {
        Some(v)
    } else {
        v.checked_neg()
    }
}

/// Used by `export_object!`; not for direct use.
#[doc(hidden)]
pub mod __rt {
    use super::*;

    fn read_input(len: i32) -> Result<Vec<u8>> {
        take_output(len.max(0) as usize, |p, cap| unsafe { raw::input_read(p, cap) })
    }

    fn install_panic_hook() {
        static mut DONE: bool = false;
        unsafe {
            if DONE {
                return;
            }
            DONE = true;
        }
        std::panic::set_hook(Box::new(|info| {
            let msg = info.to_string();
            let _ = log::write(log::ERROR, msg.as_bytes());
        }));
    }

    fn failed(what: &str, e: Error) -> i32 {
        let mut msg = String::from("dohost: ");
        msg.push_str(what);
        msg.push_str(" failed: ");
        msg.push_str(e.name());
        log::error(&msg);
        if e.code() == 0 {
            -1
        } else {
            e.code()
        }
    }

    fn object<T: DurableObject>(slot: &mut Option<T>) -> &mut T {
        if slot.is_none() {
            install_panic_hook();
            *slot = Some(T::default());
        }
        slot.as_mut().unwrap()
    }

    pub fn fetch<T: DurableObject>(slot: &mut Option<T>, len: i32) -> i32 {
        let obj = object(slot);
        let req = match read_input(len).and_then(|input| Request::decode(&input)) {
            Ok(r) => r,
            Err(e) => return failed("reading the request", e),
        };
        match obj.fetch(req) {
            Ok(resp) if resp.should_send() => match resp.send() {
                Ok(()) => 0,
                Err(e) => failed("response_set", e),
            },
            Ok(_) => 0,
            Err(e) => failed("fetch", e),
        }
    }

    pub fn init<T: DurableObject>(slot: &mut Option<T>) -> i32 {
        match object(slot).init() {
            Ok(()) => 0,
            Err(e) => failed("init", e),
        }
    }

    pub fn alarm<T: DurableObject>(slot: &mut Option<T>, len: i32) -> i32 {
        let obj = object(slot);
        let info = match read_input(len).and_then(|input| AlarmInfo::decode(&input)) {
            Ok(i) => i,
            Err(e) => return failed("reading the alarm info", e),
        };
        match obj.alarm(info) {
            Ok(()) => 0,
            Err(e) => failed("alarm", e),
        }
    }

    /// One WebSocket event: decode the input with `decode`, hand it to `handler`.
    fn ws_event<T: DurableObject, E>(
        slot: &mut Option<T>,
        len: i32,
        what: &str,
        decode: fn(&[u8]) -> Result<E>,
        handler: fn(&mut T, E) -> Result<()>,
    ) -> i32 {
        let obj = object(slot);
        let ev = match read_input(len).and_then(|input| decode(&input)) {
            Ok(ev) => ev,
            Err(e) => return failed("reading the WebSocket event", e),
        };
        match handler(obj, ev) {
            Ok(()) => 0,
            Err(e) => failed(what, e),
        }
    }

    pub fn ws_message<T: DurableObject>(slot: &mut Option<T>, len: i32) -> i32 {
        ws_event(slot, len, "websocket_message", ws::Message::decode, T::websocket_message)
    }

    pub fn ws_close<T: DurableObject>(slot: &mut Option<T>, len: i32) -> i32 {
        ws_event(slot, len, "websocket_close", ws::Close::decode, T::websocket_close)
    }

    pub fn ws_error<T: DurableObject>(slot: &mut Option<T>, len: i32) -> i32 {
        ws_event(slot, len, "websocket_error", ws::Failure::decode, T::websocket_error)
    }
}

/// Exports a [`DurableObject`] type: `dohost_abi_v1` and `dohost_fetch`, plus an export
/// for each optional method named: `init` (`dohost_init`), `alarm` (`dohost_alarm`),
/// `websocket_message`, `websocket_close`, `websocket_error` (`dohost_ws_message`, ...):
/// `export_object!(T, init, alarm, websocket_message)`. A module exports only what it
/// names, so one without WebSockets cannot accept connections and carries none of their
/// code.
#[macro_export]
macro_rules! export_object {
    (@extra $t:ty, init) => {
        #[no_mangle]
        pub extern "C" fn dohost_init() -> i32 {
            $crate::__rt::init::<$t>(unsafe { &mut __DOHOST_OBJECT })
        }
    };
    (@extra $t:ty, alarm) => {
        #[no_mangle]
        pub extern "C" fn dohost_alarm(info_len: i32) -> i32 {
            $crate::__rt::alarm::<$t>(unsafe { &mut __DOHOST_OBJECT }, info_len)
        }
    };
    (@extra $t:ty, websocket_message) => {
        #[no_mangle]
        pub extern "C" fn dohost_ws_message(input_len: i32) -> i32 {
            $crate::__rt::ws_message::<$t>(unsafe { &mut __DOHOST_OBJECT }, input_len)
        }
    };
    (@extra $t:ty, websocket_close) => {
        #[no_mangle]
        pub extern "C" fn dohost_ws_close(input_len: i32) -> i32 {
            $crate::__rt::ws_close::<$t>(unsafe { &mut __DOHOST_OBJECT }, input_len)
        }
    };
    (@extra $t:ty, websocket_error) => {
        #[no_mangle]
        pub extern "C" fn dohost_ws_error(input_len: i32) -> i32 {
            $crate::__rt::ws_error::<$t>(unsafe { &mut __DOHOST_OBJECT }, input_len)
        }
    };
    ($t:ty $(, $extra:ident)* $(,)?) => {
        static mut __DOHOST_OBJECT: ::core::option::Option<$t> = ::core::option::Option::None;

        /// The ABI marker (abi/README.md section 1); never called.
        #[no_mangle]
        pub extern "C" fn dohost_abi_v1() {}

        #[no_mangle]
        pub extern "C" fn dohost_fetch(request_len: i32) -> i32 {
            $crate::__rt::fetch::<$t>(unsafe { &mut __DOHOST_OBJECT }, request_len)
        }

        $( $crate::export_object!(@extra $t, $extra); )*
    };
}
