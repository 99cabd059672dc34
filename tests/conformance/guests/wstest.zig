//! wstest in Zig: the WebSocket test guest tests/fixtures/c/wstest.c written with the Zig
//! SDK's `dohost.websocket`, the same routes and text protocol (without "twice" and
//! "hostile", which test the host's argument checks rather than an SDK), so that
//! tests/conformance/test_ws_conformance.py can hold the two SDKs to the same transcript.
//!
//! init counts constructor runs in "inits" and sets the auto-response "ping" -> "pong".
//!   GET /ws?tags=a,b&att=X&hello=T&fail=1&close=1   accept (see wstest.c)
//!   GET /other -> 403 "nope";  GET /log -> "<closes>|<errors>";  GET /inits -> N
//! Text messages: echo:X, bcast:T:X, list, list:T, att:X, getatt, inits, close:CODE, fail.
//! Binary messages are echoed.

const std = @import("std");
const dohost = @import("dohost");
const ws = dohost.websocket;

const Allocator = std.mem.Allocator;
const Response = dohost.Response;

fn getInt(a: Allocator, key: []const u8) !i64 {
    const v = (try dohost.storage.get(a, key)) orelse return 0;
    return dohost.parseInt(v) orelse 0;
}

fn putInt(key: []const u8, n: i64) !void {
    var buf: [dohost.int_chars]u8 = undefined;
    try dohost.storage.put(key, dohost.formatInt(&buf, n));
}

fn append(a: Allocator, key: []const u8, text: []const u8) !void {
    const old = (try dohost.storage.get(a, key)) orelse "";
    try dohost.storage.put(key, try std.mem.concat(a, u8, &.{ old, text }));
}

pub fn init(arena: Allocator) !void {
    try putInt("inits", try getInt(arena, "inits") + 1);
    try ws.setAutoResponse("ping", "pong");
}

pub fn fetch(req: *const dohost.Request) !?Response {
    const a = req.arena;
    if (req.pathIs("/other")) return Response.text(403, "nope");
    if (req.pathIs("/inits")) {
        var buf: [dohost.int_chars]u8 = undefined;
        return Response.text(200, try a.dupe(u8, dohost.formatInt(&buf, try getInt(a, "inits"))));
    }
    if (req.pathIs("/log")) {
        const closes = (try dohost.storage.get(a, "closes")) orelse "";
        const errors = (try dohost.storage.get(a, "errors")) orelse "";
        return Response.text(200, try std.mem.concat(a, u8, &.{ closes, "|", errors }));
    }
    var tags: std.ArrayList([]const u8) = .empty;
    if (try req.queryParam("tags")) |q| if (q.len > 0) {
        var it = std.mem.splitScalar(u8, q, ',');
        while (it.next()) |t| try tags.append(a, t);
    };
    const id = ws.accept(tags.items) catch |e| {
        const detail = dohost.lastError(a) catch dohost.ErrorDetail{};
        const text = try std.fmt.allocPrint(a, "{d} {s} {s}", .{ dohost.statusOf(e), detail.name, detail.message });
        return Response.text(426, text);
    };
    if (try req.queryParam("att")) |att| try ws.setAttachment(id, att);
    if (try req.queryParam("hello")) |hello| try ws.sendText(id, hello);
    if (try req.queryParam("close") != null) try ws.close(id, 4000, "bye");
    if (try req.queryParam("fail") != null) return dohost.failEvent(1);
    return null;
}

pub fn webSocketMessage(arena: Allocator, m: ws.Message) !void {
    const p = switch (m.data) {
        .binary => |b| return ws.sendBinary(m.id, b),
        .text => |t| t,
    };
    var out: std.ArrayList(u8) = .empty;
    const w = &out;
    if (std.mem.startsWith(u8, p, "echo:")) {
        try w.appendSlice(arena, p[5..]);
    } else if (std.mem.startsWith(u8, p, "bcast:")) {
        const rest = p[6..];
        const colon = std.mem.indexOfScalar(u8, rest, ':') orelse return dohost.failEvent(5);
        const tag = rest[0..colon];
        const sent = try ws.sendTag(if (tag.len == 0) null else tag, .{ .text = rest[colon + 1 ..] });
        try w.print(arena, "sent {d}", .{sent});
    } else if (std.mem.startsWith(u8, p, "list")) {
        const infos = try ws.list(arena, if (p.len > 5) p[5..] else null);
        for (infos) |info| {
            try w.print(arena, "{d}[", .{info.id});
            for (info.tags, 0..) |t, j| {
                if (j > 0) try w.append(arena, ',');
                try w.appendSlice(arena, t);
            }
            try w.append(arena, ']');
            if (info.auto_response_at != null) try w.appendSlice(arena, "@auto");
            try w.append(arena, ';');
        }
    } else if (std.mem.startsWith(u8, p, "att:")) {
        ws.setAttachment(m.id, p[4..]) catch {
            try w.appendSlice(arena, "err");
            return ws.sendText(m.id, w.items);
        };
        try w.appendSlice(arena, "ok");
    } else if (std.mem.startsWith(u8, p, "getatt")) {
        try w.appendSlice(arena, "att=");
        try w.appendSlice(arena, (try ws.attachment(arena, m.id)) orelse "");
    } else if (std.mem.startsWith(u8, p, "inits")) {
        try w.print(arena, "inits={d}", .{try getInt(arena, "inits")});
    } else if (std.mem.startsWith(u8, p, "close:")) {
        const code = dohost.parseInt(p[6..]) orelse 0;
        ws.close(m.id, std.math.cast(u16, code) orelse 0, "by object") catch |e| {
            try w.print(arena, "{d}", .{dohost.statusOf(e)});
            return ws.sendText(m.id, w.items);
        };
        return;
    } else if (std.mem.startsWith(u8, p, "fail")) {
        try ws.sendText(m.id, "lost");
        try putInt("failed_write", 1);
        return dohost.failEvent(1);
    } else {
        try w.append(arena, '?');
    }
    try ws.sendText(m.id, w.items);
}

pub fn webSocketClose(arena: Allocator, c: ws.Close) !void {
    const line = try std.fmt.allocPrint(arena, "{d} {d} {s} {s};", .{ c.id, c.code, c.reason, if (c.clean) "clean" else "unclean" });
    try append(arena, "closes", line);
}

pub fn webSocketError(arena: Allocator, e: ws.Failure) !void {
    try append(arena, "errors", try std.fmt.allocPrint(arena, "{d} {s};", .{ e.id, e.message }));
}

comptime {
    dohost.serve(@This());
}
