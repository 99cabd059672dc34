//! Bookmarks: point-in-time recovery of the object's own storage (abi/README.md
//! section 5, "Bookmarks"), in the style of Durable Objects' getCurrentBookmark /
//! getBookmarkForTime / onNextSessionRestoreBookmark.
//!
//!     const before = try dohost.bookmarks.current(gpa);   // keep it (kv, a reply)
//!     ...                                                 // later, in another event:
//!     try dohost.bookmarks.restore(before);               // after this event, storage
//!                                                         // goes back to `before`
//!
//! A bookmark is 52 ASCII bytes naming a millisecond of this object's history, MACed by
//! the host: it cannot be forged, nor used by another object; two of one object compare
//! in time order as strings. `restore` only records the request: if the event succeeds,
//! its instance ends and, before the next event, the object's keys and alarm become what
//! they were at the bookmark; if the event fails, the request is dropped. Without a
//! replica on the host (dohost serve --replica) each call fails with
//! `error.NotSupported`.

const std = @import("std");
const dohost = @import("dohost.zig");

const Allocator = std.mem.Allocator;
const Error = dohost.Error;

pub const raw = struct {
    pub extern "dohost" fn bookmark_current(out: usize, cap: usize) i32;
    pub extern "dohost" fn bookmark_for_time(time_ms: i64, out: usize, cap: usize) i32;
    pub extern "dohost" fn bookmark_restore(ptr: usize, len: usize) i32;
};

/// The length of a bookmark.
pub const len = 52;

/// The bookmark of now, allocated with `gpa`.
pub fn current(gpa: Allocator) Error![]u8 {
    const buf = try gpa.alloc(u8, len);
    return dohost.takeOutput(gpa, buf, raw.bookmark_current(@intFromPtr(buf.ptr), buf.len));
}

/// The bookmark of `time_ms` (ms since the Unix epoch; a negative or future time is
/// `error.InvalidArgument`), allocated with `gpa`.
pub fn forTime(gpa: Allocator, time_ms: i64) Error![]u8 {
    const buf = try gpa.alloc(u8, len);
    return dohost.takeOutput(gpa, buf, raw.bookmark_for_time(time_ms, @intFromPtr(buf.ptr), buf.len));
}

/// Restore the object's storage to `bookmark` once this event has succeeded, before the
/// next one; `error.InvalidArgument` for anything but a bookmark of this object.
pub fn restore(bookmark: []const u8) Error!void {
    _ = try dohost.check(raw.bookmark_restore(dohost.addr(bookmark), bookmark.len));
}
