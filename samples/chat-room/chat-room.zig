//! chat-room - one durable object per chat room, written with the Zig SDK.
//!
//!   POST /messages          {"author": "...", "text": "..."} -> 201 and the stored message
//!   GET  /messages?since=T  -> {"messages": [...], "more": bool}: messages with time > T
//!                              (oldest first; at most `limit`, default 100, max 1000)
//!   GET  /retention         -> the room's retention in ms (0: keep everything)
//!   PUT  /retention         body: retention in ms, decimal text
//!
//! A message is {"author", "text", "time"}, time in ms since the Unix epoch. Times are the
//! host's clock nudged forward by 1 ms when needed, so they are strictly increasing within
//! a room: a client that polls with since=<time of the last message it has> never misses
//! or repeats a message.
//!
//! Storage: one key per message, "msg:" + the time as 13 zero-padded digits (keys sort by
//! time, so a listing from "msg:<since+1>" answers a poll), value the message's JSON; and
//! "meta:last" (the last time used) and "meta:retention".
//!
//! Retention: messages older than the retention are never returned, and an alarm deletes
//! them: it is set for the moment the oldest message expires, prunes (at most 1,000
//! messages per run, coming back at once when there are more), and sets itself for the
//! next oldest. A room that goes idle is pruned all the same.

const std = @import("std");
const dohost = @import("dohost");

const Allocator = std.mem.Allocator;
const Response = dohost.Response;
const storage = dohost.storage;

const msg_prefix = "msg:";
const key_last = "meta:last";
const key_retention = "meta:retention";
const max_author = 100;
const max_text = 16 * 1024;
const prune_per_event = 1000;

const Message = struct {
    author: []const u8,
    text: []const u8,
    time: i64,
};

const NewMessage = struct {
    author: []const u8,
    text: []const u8,
};

/// "msg:" + 13 digits: keys sort in time order up to the year 2286.
fn messageKey(buf: *[msg_prefix.len + 13]u8, time: i64) []const u8 {
    @memcpy(buf[0..msg_prefix.len], msg_prefix);
    var rest: u64 = @intCast(@max(time, 0));
    var i: usize = buf.len;
    while (i > msg_prefix.len) : (rest /= 10) {
        i -= 1;
        buf[i] = '0' + @as(u8, @intCast(rest % 10));
    }
    return buf;
}

/// An integer stored as decimal text, or `default` when the key is missing.
fn loadInt(arena: Allocator, key: []const u8, default: i64) !i64 {
    const text = (try storage.get(arena, key)) orelse return default;
    return dohost.parseInt(text) orelse error.BadEncoding;
}

fn storeInt(key: []const u8, value: i64) !void {
    var buf: [dohost.int_chars]u8 = undefined;
    try storage.put(key, dohost.formatInt(&buf, value));
}

/// Messages with a time up to this one are expired (0 when the room keeps everything): a
/// message expires when its time plus the retention is reached.
fn cutoff(arena: Allocator, now: i64) !i64 {
    const retention = try loadInt(arena, key_retention, 0);
    return if (retention > 0) now - retention else 0;
}

/// Deletes expired messages, at most `prune_per_event`; true when it stopped at that cap.
fn prune(arena: Allocator, now: i64) !bool {
    const before = try cutoff(arena, now);
    if (before <= 0) return false;
    var end_buf: [msg_prefix.len + 13]u8 = undefined;
    var it = try storage.list(arena, .{
        .prefix = msg_prefix,
        .end = messageKey(&end_buf, before + 1),
        .limit = prune_per_event,
    });
    var batch: [128][]const u8 = undefined;
    var n: usize = 0;
    var total: usize = 0;
    while (try it.next()) |entry| {
        batch[n] = entry.key;
        n += 1;
        total += 1;
        if (n == batch.len) {
            _ = try storage.deleteMany(arena, &batch);
            n = 0;
        }
    }
    if (n > 0) _ = try storage.deleteMany(arena, batch[0..n]);
    return total == prune_per_event;
}

/// Points the alarm at the moment the oldest message expires (none without a retention
/// or without messages).
fn scheduleAlarm(arena: Allocator, now: i64) !void {
    const retention = try loadInt(arena, key_retention, 0);
    var it = try storage.list(arena, .{ .prefix = msg_prefix, .limit = 1 });
    const oldest = try it.next();
    if (retention <= 0 or oldest == null) {
        if (try dohost.alarm.get() != null) try dohost.alarm.delete();
        return;
    }
    const time = dohost.parseInt(oldest.?.key[msg_prefix.len..]) orelse return error.BadEncoding;
    const due = @max(time + retention, now);
    if (try dohost.alarm.get() != due) try dohost.alarm.set(due);
}

/// The alarm: prune what expired, then wait for the next expiry.
pub fn alarm(arena: Allocator, info: dohost.AlarmInfo) !void {
    _ = info;
    const now = dohost.nowMs();
    if (try prune(arena, now)) return dohost.alarm.set(now); // more to do: come back at once
    try scheduleAlarm(arena, now);
}

fn jsonError(status: u16, comptime message: []const u8) Response {
    return Response.json(status, "{\"error\":\"" ++ message ++ "\"}\n");
}

fn postMessage(req: *const dohost.Request) !Response {
    const a = req.arena;
    const in = std.json.parseFromSliceLeaky(NewMessage, a, req.body, .{ .ignore_unknown_fields = true }) catch
        return jsonError(400, "body must be JSON {\\\"author\\\": string, \\\"text\\\": string}");
    if (in.author.len == 0 or in.author.len > max_author) return jsonError(400, "author must be 1 to 100 bytes");
    if (in.text.len == 0 or in.text.len > max_text) return jsonError(400, "text must be 1 to 16384 bytes");

    const now = dohost.nowMs();
    const time = @max(now, try loadInt(a, key_last, 0) + 1); // strictly increasing
    const msg: Message = .{ .author = in.author, .text = in.text, .time = time };
    const json = try std.json.Stringify.valueAlloc(a, msg, .{});
    var key_buf: [msg_prefix.len + 13]u8 = undefined;
    try storage.put(messageKey(&key_buf, time), json);
    try storeInt(key_last, time);
    // A set alarm is due no later than the oldest message's expiry: only a room without
    // one needs scheduling (the first message, or the first since the alarm emptied it).
    if (try dohost.alarm.get() == null) try scheduleAlarm(a, now);
    return .{ .status = 201, .content_type = "application/json", .body = json };
}

fn getMessages(req: *const dohost.Request) !Response {
    const a = req.arena;
    const since = try intParam(req, "since", 0) orelse return Response.text(400, "since must be an integer (ms)\n");
    const limit_param = try intParam(req, "limit", 100) orelse return Response.text(400, "limit must be an integer\n");
    const limit = std.math.clamp(limit_param, 1, 1000);
    const from = @max(since, try cutoff(a, dohost.nowMs())) + 1; // expired ones stay hidden
    var start_buf: [msg_prefix.len + 13]u8 = undefined;
    var it = try storage.list(a, .{
        .prefix = msg_prefix,
        .start = messageKey(&start_buf, from),
        .limit = @intCast(limit + 1), // one more tells whether there is more
    });
    var out: std.ArrayList(u8) = .empty;
    try out.appendSlice(a, "{\"messages\":[");
    var count: i64 = 0;
    var more = false;
    while (try it.next()) |entry| {
        if (count == limit) {
            more = true;
            break;
        }
        if (count > 0) try out.append(a, ',');
        try out.appendSlice(a, entry.value); // stored as JSON already
        count += 1;
    }
    try out.appendSlice(a, if (more) "],\"more\":true}\n" else "],\"more\":false}\n");
    return Response.json(200, out.items);
}

/// A query parameter as an integer: `default` when absent, null when not an integer.
fn intParam(req: *const dohost.Request, name: []const u8, default: i64) !?i64 {
    const text = (try req.queryParam(name)) orelse return default;
    return dohost.parseInt(text);
}

fn putRetention(req: *const dohost.Request) !Response {
    const ms = dohost.parseInt(req.body) orelse return Response.text(400, "body must be the retention in ms\n");
    if (ms < 0) return Response.text(400, "retention must be >= 0 (0 keeps everything)\n");
    try storeInt(key_retention, ms);
    try scheduleAlarm(req.arena, dohost.nowMs()); // earlier or later than before, or none
    return getRetention(req);
}

fn getRetention(req: *const dohost.Request) !Response {
    var buf: [dohost.int_chars]u8 = undefined;
    const text = dohost.formatInt(&buf, try loadInt(req.arena, key_retention, 0));
    return Response.text(200, try req.arena.dupe(u8, text));
}

fn methodNotAllowed(comptime allow: []const u8) Response {
    const headers = [_]dohost.Header{.{ .name = "allow", .value = allow }};
    return .{ .status = 405, .content_type = "text/plain", .headers = &headers, .body = "method not allowed\n" };
}

pub fn fetch(req: *const dohost.Request) !Response {
    if (req.pathIs("/messages")) {
        if (req.methodIs("POST")) return postMessage(req);
        if (req.methodIs("GET")) return getMessages(req);
        return methodNotAllowed("GET, POST");
    }
    if (req.pathIs("/retention")) {
        if (req.methodIs("PUT")) return putRetention(req);
        if (req.methodIs("GET")) return getRetention(req);
        return methodNotAllowed("GET, PUT");
    }
    return Response.text(404, "not found\n");
}

comptime {
    dohost.serve(@This());
}
