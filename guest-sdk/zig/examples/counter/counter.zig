//! counter - the smallest useful durable object: one integer in storage, the same routes
//! as samples/counter (C). Values are decimal text (text/plain; charset=utf-8).
//!
//!   GET  /       -> the current value
//!   POST /incr   -> adds 1, or the integer in the body (may be negative); the new value
//!   POST /reset  -> sets it to 0; the new value

const std = @import("std");
const dohost = @import("dohost");

const key = "count";

/// The stored value; a missing key means 0.
fn load(arena: std.mem.Allocator) !i64 {
    const text = (try dohost.storage.get(arena, key)) orelse return 0;
    return dohost.parseInt(text) orelse error.BadEncoding;
}

/// Stores the value and answers with it.
fn store(arena: std.mem.Allocator, value: i64) !dohost.Response {
    var buf: [dohost.int_chars]u8 = undefined;
    const text = try arena.dupe(u8, dohost.formatInt(&buf, value));
    try dohost.storage.put(key, text);
    return dohost.Response.text(200, text);
}

fn methodNotAllowed(comptime allow: []const u8) dohost.Response {
    const headers = [_]dohost.Header{.{ .name = "allow", .value = allow }};
    var r = dohost.Response.text(405, "method not allowed\n");
    r.headers = &headers;
    return r;
}

pub fn fetch(req: *const dohost.Request) !dohost.Response {
    if (req.pathIs("/")) {
        if (!req.methodIs("GET")) return methodNotAllowed("GET");
        var buf: [dohost.int_chars]u8 = undefined;
        const text = try req.arena.dupe(u8, dohost.formatInt(&buf, try load(req.arena)));
        return dohost.Response.text(200, text);
    }
    if (req.pathIs("/incr")) {
        if (!req.methodIs("POST")) return methodNotAllowed("POST");
        const delta = if (req.body.len == 0) 1 else dohost.parseInt(req.body) orelse
            return dohost.Response.text(400, "body must be an integer\n");
        const value = std.math.add(i64, try load(req.arena), delta) catch
            return dohost.Response.text(400, "counter would overflow\n");
        return store(req.arena, value);
    }
    if (req.pathIs("/reset")) {
        if (!req.methodIs("POST")) return methodNotAllowed("POST");
        return store(req.arena, 0);
    }
    return dohost.Response.text(404, "not found\n");
}

comptime {
    dohost.serve(@This());
}
