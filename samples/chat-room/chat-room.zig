//! chat-room - one durable object per chat room, written with the Zig SDK.
//!
//!   POST /messages          {"author": "...", "text": "..."} -> 201 and the stored message
//!                              (also sent to every connected member)
//!   GET  /messages?since=T  -> {"messages": [...], "more": bool}: messages with time > T
//!                              (oldest first; at most `limit`, default 100, max 1000)
//!   GET  /retention         -> the room's retention in ms (0: keep everything)
//!   PUT  /retention         body: retention in ms, decimal text
//!   GET  /ws?name=N&presence=1  WebSocket: send {"author", "text"} as a text frame; every
//!                              member receives each message as {"author", "text", "time"};
//!                              a new member first receives the last 50 messages
//!   GET  /members           -> {"members": [{"id", "name", "joined", "pinged"}]}: who is here
//!   GET  /stats             -> {"members": N, "constructed": K}
//!   GET  /                  -> the chat page (chat.html): a browser client of /ws
//!
//! A message is {"author", "text", "time"}, time in ms since the Unix epoch. Times are the
//! host's clock nudged forward by 1 ms when needed, so they are strictly increasing within
//! a room: a client that polls with since=<time of the last message it has> never misses
//! or repeats a message.
//!
//! Storage: one key per message, "msg:" + the time as 13 zero-padded digits (keys sort by
//! time, so a listing from "msg:<since+1>" answers a poll), value the message's JSON; and
//! "meta:last" (the last time used), "meta:retention" and "meta:constructed" (how many
//! times an instance of this room was created: it grows each time the room wakes from
//! hibernation).
//!
//! WebSockets: the host keeps the connections while the room hibernates, so everything
//! the room knows about a member lives with its connection: its tags ("member",
//! "presence" when it asked for join/leave notices, "name:<name>" when it gave one) and
//! its attachment (the time it joined). Sending a message and POST /messages store it
//! exactly alike, then send the stored JSON to every connection. "ping" is answered
//! "pong" by the host itself, without waking the room (a keep-alive for browsers).
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
const ws = dohost.websocket;

const msg_prefix = "msg:";
const key_last = "meta:last";
const key_retention = "meta:retention";
const key_constructed = "meta:constructed";
const max_author = 100;
const max_text = 16 * 1024;
const prune_per_event = 1000;
const history_on_join = 50;

// Connection tags (abi: at most 10 per connection, each 1..256 bytes).
const tag_member = "member";
const tag_presence = "presence"; // wants {"event": "joined" | "left"} notices
const tag_name_prefix = "name:";

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

/// Why `in` cannot be stored, or null when it can.
fn invalidMessage(in: NewMessage) ?[]const u8 {
    if (in.author.len == 0 or in.author.len > max_author) return "author must be 1 to 100 bytes";
    if (in.text.len == 0 or in.text.len > max_text) return "text must be 1 to 16384 bytes";
    return null;
}

const bad_message_json = "body must be JSON {\\\"author\\\": string, \\\"text\\\": string}";

/// Stores a valid message and sends it to every connected member; returns its JSON. The
/// one path for POST /messages and WebSocket messages, so both views agree.
fn addMessage(a: Allocator, in: NewMessage) ![]const u8 {
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
    // Sent once the event's writes are durable (sends are output, like a response).
    _ = try ws.sendTag(tag_member, .{ .text = json });
    return json;
}

fn postMessage(req: *const dohost.Request) !Response {
    const a = req.arena;
    const in = std.json.parseFromSliceLeaky(NewMessage, a, req.body, .{ .ignore_unknown_fields = true }) catch
        return jsonError(400, bad_message_json);
    if (invalidMessage(in)) |problem| return Response.json(400, try errorJson(a, problem));
    const json = try addMessage(a, in);
    return .{ .status = 201, .content_type = "application/json", .body = json };
}

/// {"error": "<problem>"}
fn errorJson(a: Allocator, problem: []const u8) ![]const u8 {
    const json = try std.json.Stringify.valueAlloc(a, .{ .@"error" = problem }, .{});
    return std.mem.concat(a, u8, &.{ json, "\n" });
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

// ---- WebSockets ------------------------------------------------------------------------

/// The constructor: runs when an instance of the room is created (its first event, and
/// again after every hibernation). The auto-response belongs here so that it is set again
/// after a host restart.
pub fn init(arena: Allocator) !void {
    try ws.setAutoResponse("ping", "pong");
    try storeInt(key_constructed, try loadInt(arena, key_constructed, 0) + 1);
}

/// A member's name: its "name:" tag, or "" when it gave none.
fn memberName(tags: []const []const u8) []const u8 {
    for (tags) |t| {
        if (std.mem.startsWith(u8, t, tag_name_prefix)) return t[tag_name_prefix.len..];
    }
    return "";
}

/// A notice sent to the members tagged "presence": "joined", "left" (with the close code
/// and whether the closing handshake ran) or "error" (the connection failed; its "left"
/// follows).
const Presence = struct {
    event: []const u8,
    id: ws.ConnId,
    name: []const u8,
    members: ?usize = null,
    code: ?u16 = null,
    clean: ?bool = null,
    message: ?[]const u8 = null,
};

/// Sends `notice` to the presence listeners; `count` adds how many members are connected.
fn announce(a: Allocator, notice: Presence, count: bool) !void {
    // Most members do not listen: then skip the work (a join of 1,000 would be O(n^2)).
    if ((try ws.list(a, tag_presence)).len == 0) return;
    var n = notice;
    if (count) n.members = (try ws.list(a, tag_member)).len;
    const json = try std.json.Stringify.valueAlloc(a, n, .{ .emit_null_optional_fields = false });
    _ = try ws.sendTag(tag_presence, .{ .text = json });
}

/// GET /ws: accepts the upgrade, sends the last 50 messages, announces the member.
fn join(req: *const dohost.Request) !?Response {
    const a = req.arena;
    // (426 would carry "Upgrade: websocket", but the host drops hop-by-hop headers.)
    if (!ws.isUpgrade(req)) return Response.text(426, "connect with a WebSocket\n");
    var tags: [3][]const u8 = undefined;
    var n: usize = 0;
    tags[n] = tag_member;
    n += 1;
    if (try req.queryParam("presence")) |v| if (std.mem.eql(u8, v, "1")) {
        tags[n] = tag_presence;
        n += 1;
    };
    const name = (try req.queryParam("name")) orelse "";
    if (name.len > max_author or !std.unicode.utf8ValidateSlice(name)) {
        return Response.json(400, try errorJson(a, "name must be at most 100 bytes of UTF-8"));
    }
    if (name.len > 0) {
        tags[n] = try std.mem.concat(a, u8, &.{ tag_name_prefix, name });
        n += 1;
    }
    const id = try ws.accept(tags[0..n]);
    var joined_buf: [dohost.int_chars]u8 = undefined;
    try ws.setAttachment(id, dohost.formatInt(&joined_buf, dohost.nowMs()));
    try sendHistory(a, id);
    try announce(a, .{ .event = "joined", .id = id, .name = name }, true);
    return null; // the answer is the 101 handshake
}

/// Sends the last `history_on_join` unexpired messages to one connection, oldest first.
fn sendHistory(a: Allocator, id: ws.ConnId) !void {
    var start_buf: [msg_prefix.len + 13]u8 = undefined;
    var it = try storage.list(a, .{
        .prefix = msg_prefix,
        .start = messageKey(&start_buf, try cutoff(a, dohost.nowMs()) + 1),
        .reverse = true, // newest first: the last 50
        .limit = history_on_join,
    });
    var newest_first: [history_on_join][]const u8 = undefined;
    var n: usize = 0;
    while (try it.next()) |entry| : (n += 1) newest_first[n] = entry.value;
    while (n > 0) {
        n -= 1;
        try ws.sendText(id, newest_first[n]);
    }
}

/// A member sent a message: store it and send it to everyone (the sender included: its
/// copy carries the time the room gave it). Anything else gets {"error"} back.
pub fn webSocketMessage(arena: Allocator, msg: ws.Message) !void {
    const text = switch (msg.data) {
        .text => |t| t,
        .binary => return ws.sendText(msg.id, try errorJson(arena, "send text frames")),
    };
    const in = std.json.parseFromSliceLeaky(NewMessage, arena, text, .{ .ignore_unknown_fields = true }) catch
        return ws.sendText(msg.id, try errorJson(arena, bad_message_json));
    if (invalidMessage(in)) |problem| return ws.sendText(msg.id, try errorJson(arena, problem));
    _ = try addMessage(arena, in);
}

/// A member left: with a close frame, or vanished (clean = false, code 1006).
pub fn webSocketClose(arena: Allocator, ev: ws.Close) !void {
    const notice: Presence = .{ .event = "left", .id = ev.id, .name = memberName(ev.tags), .code = ev.code, .clean = ev.clean };
    try announce(arena, notice, true);
}

/// A connection failed (the client vanished, broke the protocol, sent too much); its
/// close event follows and announces the departure.
pub fn webSocketError(arena: Allocator, ev: ws.Failure) !void {
    dohost.log.warn(ev.message);
    try announce(arena, .{ .event = "error", .id = ev.id, .name = memberName(ev.tags), .message = ev.message }, false);
}

/// GET /members: {"members": [{"id", "name", "joined", "pinged"}]} in the order they
/// joined; "pinged" is when the host last answered the member's "ping" (null: never).
fn getMembers(req: *const dohost.Request) !Response {
    const a = req.arena;
    const Member = struct { id: ws.ConnId, name: []const u8, joined: i64, pinged: ?i64 };
    const infos = try ws.list(a, tag_member);
    const members = try a.alloc(Member, infos.len);
    for (infos, members) |info, *m| {
        const joined = (try ws.attachment(a, info.id)) orelse "0";
        m.* = .{
            .id = info.id,
            .name = memberName(info.tags),
            .joined = dohost.parseInt(joined) orelse 0,
            .pinged = info.auto_response_at,
        };
    }
    return Response.json(200, try std.json.Stringify.valueAlloc(a, .{ .members = members }, .{}));
}

/// GET /stats: {"members": N, "constructed": K}.
fn getStats(req: *const dohost.Request) !Response {
    const a = req.arena;
    const stats = .{
        .members = (try ws.list(a, tag_member)).len,
        .constructed = try loadInt(a, key_constructed, 0),
    };
    return Response.json(200, try std.json.Stringify.valueAlloc(a, stats, .{}));
}

const chat_page = @embedFile("chat.html");

pub fn fetch(req: *const dohost.Request) !?Response {
    if (req.pathIs("/messages")) {
        if (req.methodIs("POST")) return try postMessage(req);
        if (req.methodIs("GET")) return try getMessages(req);
        return methodNotAllowed("GET, POST");
    }
    if (req.pathIs("/retention")) {
        if (req.methodIs("PUT")) return try putRetention(req);
        if (req.methodIs("GET")) return try getRetention(req);
        return methodNotAllowed("GET, PUT");
    }
    const get_paths = [_][]const u8{ "/ws", "/members", "/stats", "/" };
    for (get_paths) |p| {
        if (req.pathIs(p) and !req.methodIs("GET")) return methodNotAllowed("GET");
    }
    if (req.pathIs("/ws")) return join(req);
    if (req.pathIs("/members")) return try getMembers(req);
    if (req.pathIs("/stats")) return try getStats(req);
    if (req.pathIs("/")) return .{ .status = 200, .content_type = "text/html; charset=utf-8", .body = chat_page };
    return Response.text(404, "not found\n");
}

comptime {
    dohost.serve(@This());
}
