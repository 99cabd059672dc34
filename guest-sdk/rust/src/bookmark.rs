//! Bookmarks: point-in-time recovery of the object's own storage (abi/README.md
//! section 5, "Bookmarks"), in the style of Durable Objects' `getCurrentBookmark` /
//! `getBookmarkForTime` / `onNextSessionRestoreBookmark`.
//!
//! ```ignore
//! let before = dohost::bookmark::current()?;   // keep it (kv, a reply)
//! // ... later, in another event:
//! dohost::bookmark::restore(&before)?;         // after this event, storage goes back
//! ```
//!
//! A bookmark is 52 ASCII characters naming a millisecond of this object's history,
//! MACed by the host: it cannot be forged, nor used by another object; two of one object
//! compare in time order as strings. `restore` only records the request: if the event
//! succeeds, its instance ends and, before the next event, the object's keys and alarm
//! become what they were at the bookmark; if the event fails, the request is dropped.
//! Without a replica on the host (`dohost serve --replica`) each call is
//! `Err(Error::NOT_SUPPORTED)`.

use crate::{check, raw, take_output, Error, Result};

/// The length of a bookmark.
pub const LEN: usize = 52;

fn text(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| Error::SDK_DECODE)
}

/// The bookmark of now.
pub fn current() -> Result<String> {
    text(take_output(LEN, |p, cap| unsafe { raw::bookmark_current(p, cap) })?)
}

/// The bookmark of `time_ms` (ms since the Unix epoch); a negative or future time is
/// `Err(Error::INVALID_ARGUMENT)`.
pub fn for_time(time_ms: i64) -> Result<String> {
    text(take_output(LEN, |p, cap| unsafe { raw::bookmark_for_time(time_ms, p, cap) })?)
}

/// Restore the object's storage to `bookmark` once this event has succeeded, before the
/// next one; `Err(Error::INVALID_ARGUMENT)` for anything but a bookmark of this object.
pub fn restore(bookmark: &[u8]) -> Result<()> {
    check(unsafe { raw::bookmark_restore(bookmark.as_ptr(), bookmark.len()) }).map(|_| ())
}
