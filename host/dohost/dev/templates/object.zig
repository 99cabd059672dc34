//! {{name}} - a durable object made by `dohost init`. One integer in storage:
//!
//!   GET  /       -> the count
//!   POST /incr   -> adds step and answers the new count (and logs a line)
//!
//! Each request is one event: its writes commit together before the response leaves.
//! The SDK is the Zig SDK of the installed dohost (`dohost sdk zig` prints where).

const std = @import("std");
const dohost = @import("dohost");

const key = "count";
const step: i64 = 1;

fn load(arena: std.mem.Allocator) !i64 {
    const text = (try dohost.storage.get(arena, key)) orelse return 0;
    return dohost.parseInt(text) orelse error.BadEncoding;
}

pub fn fetch(req: *const dohost.Request) !dohost.Response {
    var buf: [dohost.int_chars]u8 = undefined;
    if (req.pathIs("/") and req.methodIs("GET")) {
        const text = try req.arena.dupe(u8, dohost.formatInt(&buf, try load(req.arena)));
        return dohost.Response.text(200, text);
    }
    if (req.pathIs("/incr") and req.methodIs("POST")) {
        const value = (try load(req.arena)) + step;
        const text = try req.arena.dupe(u8, dohost.formatInt(&buf, value));
        try dohost.storage.put(key, text);
        dohost.log.info("incremented");
        return dohost.Response.text(200, text);
    }
    return dohost.Response.text(404, "not found\n");
}

comptime {
    dohost.serve(@This());
}
