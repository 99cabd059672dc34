//! kvtest in Zig: the conformance guest. It answers the routes of tests/fixtures/c/kvtest.c
//! (the C SDK's test guest) with the same texts, through the Zig SDK, so that
//! tests/conformance/ can run one spec against every language. See kvtest.c's header for
//! the route list and the "status text" format ("-4 key_too_large <message>").
//! Not here: the hostile routes (/spin, /recurse, /grow), which test the host, not an SDK.
//! The alarm handler follows the keys kvtest.c documents (__alarm_spin, __alarm_reset_in,
//! __alarm_busy_ms, __alarm_fail, __alarm_chain) and records runs in "__alarm" and "__alarm_runs".
//! The SQL and call routes (/sql, /call, /whoami, /caller) go through `dohost.sql` and
//! `dohost.calls`.

const std = @import("std");
const dohost = @import("dohost");

const Allocator = std.mem.Allocator;
const Request = dohost.Request;
const Response = dohost.Response;
const storage = dohost.storage;

/// A growable text in the event arena.
const Text = struct {
    a: Allocator,
    list: std.ArrayList(u8) = .empty,

    fn put(t: *Text, bytes: []const u8) !void {
        try t.list.appendSlice(t.a, bytes);
    }

    fn int(t: *Text, v: i64) !void {
        var buf: [dohost.int_chars]u8 = undefined;
        try t.put(dohost.formatInt(&buf, v));
    }

    /// "<st>" or "<st> <name> <message>".
    fn status(t: *Text, st: i32) !void {
        try t.int(st);
        if (st >= 0) return;
        try t.put(" ");
        if (dohost.lastError(t.a)) |d| {
            try t.put(d.name);
            try t.put(" ");
            try t.put(d.message);
        } else |e| {
            try t.put(dohost.statusName(st));
            try t.put(" (last_error returned ");
            try t.int(dohost.statusOf(e));
            try t.put(")");
        }
    }
};

fn plain(status: u16, body: []const u8) Response {
    return .{ .status = status, .content_type = "text/plain", .body = body };
}

fn replyStatus(a: Allocator, http: u16, st: i32) !Response {
    var t: Text = .{ .a = a };
    try t.status(st);
    return plain(http, t.list.items);
}

/// The status of a call: its count (or 0), or its error's code.
fn statusOf(r: anytype) i32 {
    const v = r catch |e| return dohost.statusOf(e);
    return switch (@TypeOf(v)) {
        void => 0,
        bool => @intFromBool(v),
        else => @intCast(v),
    };
}

fn intParam(req: *const Request, name: []const u8, dflt: i64) !i64 {
    return (try req.queryInt(name)) orelse dflt;
}

fn keyParam(req: *const Request) ![]const u8 {
    return (try req.queryParam("key")) orelse "";
}

/// A form body "a=1&b&c=3" as percent-decoded entries ("a&" is one entry).
fn parseForm(req: *const Request) ![]dohost.Entry {
    var entries: std.ArrayList(dohost.Entry) = .empty;
    const body = req.body;
    var s: usize = 0;
    while (s < body.len) {
        const amp = std.mem.indexOfScalarPos(u8, body, s, '&') orelse body.len;
        const part = body[s..amp];
        const eq = std.mem.indexOfScalar(u8, part, '=');
        try entries.append(req.arena, .{
            .key = try dohost.percentDecode(req.arena, if (eq) |i| part[0..i] else part),
            .value = try dohost.percentDecode(req.arena, if (eq) |i| part[i + 1 ..] else ""),
        });
        s = amp + 1;
    }
    return entries.items;
}

fn formKeys(req: *const Request) ![]const []const u8 {
    const entries = try parseForm(req);
    const keys = try req.arena.alloc([]const u8, entries.len);
    for (entries, keys) |e, *k| k.* = e.key;
    return keys;
}

fn replyGetMany(a: Allocator, keys: []const []const u8) !Response {
    const values = storage.getMany(a, keys) catch |e| return replyStatus(a, 200, dohost.statusOf(e));
    var found: i64 = 0; // the host's count: distinct keys found
    for (keys, values, 0..) |k, v, i| {
        if (v == null) continue;
        const seen = for (keys[0..i]) |prev| {
            if (std.mem.eql(u8, prev, k)) break true;
        } else false;
        if (!seen) found += 1;
    }
    var t: Text = .{ .a = a };
    try t.int(found);
    try t.put("\n");
    for (keys, values) |k, v| {
        const value = v orelse continue;
        try t.put(k);
        try t.put("=");
        try t.put(value);
        try t.put("\n");
    }
    return plain(200, t.list.items);
}

fn routeMany(req: *const Request) !Response {
    const a = req.arena;
    const n = try intParam(req, "n", 0);
    const op = try req.queryParam("op");
    if (n < 0 or n > 100000 or op == null) return Response.text(400, "need op= and 0 <= n <= 100000\n");
    const count: usize = @intCast(n);
    const keys = try a.alloc([]const u8, count);
    const entries = try a.alloc(dohost.Entry, count);
    for (keys, entries, 0..) |*k, *e, i| {
        var buf: [dohost.int_chars]u8 = undefined;
        k.* = try std.mem.concat(a, u8, &.{ "k", dohost.formatInt(&buf, @intCast(i)) });
        e.* = .{ .key = k.*, .value = "v" };
    }
    if (std.mem.eql(u8, op.?, "put")) return replyStatus(a, 200, statusOf(storage.putMany(a, entries)));
    if (std.mem.eql(u8, op.?, "delete")) return replyStatus(a, 200, statusOf(storage.deleteMany(a, keys)));
    return replyGetMany(a, keys);
}

fn routeFill(req: *const Request) !Response {
    const a = req.arena;
    const n = try intParam(req, "n", 0);
    const vlen = try intParam(req, "vlen", 1);
    const prefix = (try req.queryParam("prefix")) orelse "";
    if (n < 0 or n > 1000000 or vlen < 0 or vlen > 4 * 1024 * 1024)
        return Response.text(400, "need 0 <= n <= 1e6 and 0 <= vlen <= 4 MiB\n");
    const value = try a.alloc(u8, @intCast(vlen));
    @memset(value, 'v');
    const key = try a.alloc(u8, prefix.len + 6);
    @memcpy(key[0..prefix.len], prefix);
    var i: i64 = 0;
    while (i < n) : (i += 1) {
        var rest = i;
        var d: usize = 6;
        while (d > 0) : (rest = @divTrunc(rest, 10)) { // zero-padded so keys sort numerically
            d -= 1;
            key[prefix.len + d] = '0' + @as(u8, @intCast(@mod(rest, 10)));
        }
        storage.put(key, value) catch |e| return replyStatus(a, 200, dohost.statusOf(e));
    }
    return replyStatus(a, 200, 0);
}

fn routeList(req: *const Request) !Response {
    const a = req.arena;
    const opts: storage.ListOptions = .{
        .prefix = try req.queryParam("prefix"),
        .start = try req.queryParam("start"),
        .end = try req.queryParam("end"),
        .reverse = try intParam(req, "reverse", 0) != 0,
        .limit = @truncate(@as(u64, @bitCast(try intParam(req, "limit", 0)))),
    };
    var it = storage.list(a, opts) catch |e| return replyStatus(a, 200, dohost.statusOf(e));
    var body: Text = .{ .a = a };
    var count: i64 = 0;
    while (it.next() catch |e| return replyStatus(a, 200, dohost.statusOf(e))) |entry| {
        try body.put(entry.key);
        try body.put("=");
        try body.put(entry.value);
        try body.put("\n");
        count += 1;
    }
    var t: Text = .{ .a = a };
    try t.int(count);
    try t.put(" ");
    try t.int(it.pages);
    try t.put("\n");
    try t.put(body.list.items);
    return plain(200, t.list.items);
}

fn repeated(a: Allocator, c: u8, n: i64) ![]u8 {
    const buf = try a.alloc(u8, @intCast(n));
    @memset(buf, c);
    return buf;
}

fn routePutBig(req: *const Request) !Response {
    const klen = try intParam(req, "klen", 0);
    const vlen = try intParam(req, "vlen", 0);
    const max = 64 * 1024 * 1024;
    if (klen < 0 or vlen < 0 or klen > max or vlen > max) return Response.text(400, "need 0 <= klen, vlen <= 64 MiB\n");
    const st = statusOf(storage.put(try repeated(req.arena, 'k', klen), try repeated(req.arena, 'v', vlen)));
    return replyStatus(req.arena, 200, st);
}

fn routeGetBig(req: *const Request) !Response {
    const klen = try intParam(req, "klen", 0);
    if (klen < 0 or klen > 64 * 1024 * 1024) return Response.text(400, "need 0 <= klen <= 64 MiB\n");
    const st: i32 = if (storage.get(req.arena, try repeated(req.arena, 'k', klen))) |v|
        (if (v) |value| @intCast(value.len) else dohost.statusOf(error.NotFound))
    else |e|
        dohost.statusOf(e);
    return replyStatus(req.arena, 200, st);
}

fn routeRandom(req: *const Request, raw_call: bool) !Response {
    const len = try intParam(req, "len", 16);
    if (len < 0 or len > 64 * 1024 * 1024) return Response.text(400, "need 0 <= len <= 64 MiB\n");
    const buf = try req.arena.alloc(u8, @intCast(len));
    if (raw_call) return replyStatus(req.arena, 200, dohost.raw.random_fill(dohost.addr(buf), buf.len));
    dohost.randomFill(buf) catch |e| return replyStatus(req.arena, 200, dohost.statusOf(e));
    return .{ .content_type = "application/octet-stream", .body = buf };
}

fn routeLastError(a: Allocator) !Response {
    var t: Text = .{ .a = a };
    if (dohost.lastError(a)) |d| {
        try t.put("0 ");
        try t.int(d.code);
        try t.put(" ");
        try t.put(d.name);
        try t.put(" ");
        try t.put(d.message);
    } else |e| {
        try t.int(dohost.statusOf(e));
    }
    return plain(200, t.list.items);
}

fn routeEcho(req: *const Request) !Response {
    var t: Text = .{ .a = req.arena };
    try t.put("method=");
    try t.put(req.method);
    try t.put("\npath=");
    try t.put(req.path);
    try t.put("\nquery=");
    try t.put(req.query);
    for (req.headers) |h| {
        try t.put("\nheader:");
        try t.put(h.name);
        try t.put("=");
        try t.put(h.value);
    }
    try t.put("\nbody_len=");
    try t.int(@intCast(req.body.len));
    try t.put("\nbody=");
    try t.put(req.body);
    return plain(200, t.list.items);
}

/// Sets `r` now; on a refusal answers 200 with the status text instead.
fn sendOrStatus(a: Allocator, r: Response) !?Response {
    dohost.respond(r) catch |e| return try replyStatus(a, 200, dohost.statusOf(e));
    return null;
}

fn routeBigResponse(req: *const Request) !?Response {
    const len = try intParam(req, "len", 0);
    if (len < 0 or len > 100 * 1024 * 1024) return Response.text(400, "need 0 <= len <= 100 MiB\n");
    const body = try repeated(req.arena, 'x', len);
    return sendOrStatus(req.arena, .{ .content_type = "application/octet-stream", .body = body });
}

const extra_headers = [_]dohost.Header{
    .{ .name = "x-one", .value = "1" },
    .{ .name = "x-dup", .value = "a" },
    .{ .name = "x-dup", .value = "b" },
    .{ .name = "connection", .value = "close" }, // hop-by-hop: the host drops it
};

var init_runs: i64 = 0; // dohost_init calls of this instance

pub fn init(arena: Allocator) !void {
    _ = arena;
    init_runs += 1;
}

var alarm_calls: i64 = 0; // alarm handler entries of this instance
var spins: u64 = 0;

/// The integer stored under `key`, if any.
fn intKey(a: Allocator, key: []const u8) ?i64 {
    const v = (storage.get(a, key) catch return null) orelse return null;
    return dohost.parseInt(v);
}

/// A successful run's record: "__alarm" and one more line of "__alarm_runs".
fn recordAlarmRun(a: Allocator, info: dohost.AlarmInfo) !void {
    var t: Text = .{ .a = a };
    try t.int(info.scheduled_ms);
    try t.put(" ");
    try t.int(@intCast(info.retry_count));
    try t.put(if (info.is_retry) " true" else " false");
    try storage.put("__alarm", t.list.items);
    var all: Text = .{ .a = a };
    if (storage.get(a, "__alarm_runs") catch null) |runs| try all.put(runs);
    try all.put(t.list.items);
    try all.put("\n");
    try storage.put("__alarm_runs", all.list.items);
}

pub fn alarm(arena: Allocator, info: dohost.AlarmInfo) !void {
    alarm_calls += 1;
    if ((storage.get(arena, "__alarm_spin") catch null) != null) {
        const p: *volatile u64 = &spins;
        while (true) p.* +%= 1;
    }
    if (intKey(arena, "__alarm_reset_in")) |n| {
        dohost.alarm.set(dohost.nowMs() + n) catch {};
        return dohost.failEvent(1); // fails, yet its new alarm is kept and replaces the retry
    }
    if (intKey(arena, "__alarm_busy_ms")) |n| {
        const until = dohost.nowMs() + n; // wall time, for the host's crash tests
        while (dohost.nowMs() < until) {}
    }
    if (intKey(arena, "__alarm_fail")) |n| {
        if (@as(i64, @intCast(info.retry_count)) < n) return dohost.failEvent(1);
    }
    try recordAlarmRun(arena, info);
    if (intKey(arena, "__alarm_chain")) |n| {
        dohost.alarm.set(dohost.nowMs() + n) catch return dohost.failEvent(1);
    }
}

fn routeAlarmSet(req: *const Request, relative: bool) !Response {
    const v = (try req.queryParam("ms")) orelse return Response.text(400, "need ms=<integer>\n");
    const ms = dohost.parseInt(v) orelse return Response.text(400, "need ms=<integer>\n");
    const at = if (relative) dohost.nowMs() + ms else ms;
    return replyStatus(req.arena, 200, statusOf(dohost.alarm.set(at)));
}

fn routeAlarmGet(a: Allocator) !Response {
    const at = dohost.alarm.get() catch |e| return replyStatus(a, 200, dohost.statusOf(e));
    var t: Text = .{ .a = a };
    try t.int(at orelse return Response.text(200, "none"));
    return plain(200, t.list.items);
}

// ---- SQL and calls (formats in kvtest.c's header) ------------------------------------

const sql = dohost.sql;
const calls = dohost.calls;
const hex_digits = "0123456789abcdef";

fn putHex(t: *Text, bytes: []const u8) !void {
    for (bytes) |b| try t.put(&.{ hex_digits[b >> 4], hex_digits[b & 15] });
}

fn parseHex(a: Allocator, s: []const u8) ?[]u8 {
    if (s.len % 2 != 0) return null;
    const out = a.alloc(u8, s.len / 2) catch return null;
    for (out, 0..) |*b, i| {
        const hi = std.fmt.charToDigit(s[2 * i], 16) catch return null;
        const lo = std.fmt.charToDigit(s[2 * i + 1], 16) catch return null;
        b.* = hi << 4 | lo;
    }
    return out;
}

/// One "p" query parameter: n, i:<decimal>, f:<16 hex digits of the bits>, t:<text>, b:<hex>.
fn parseValue(a: Allocator, v: []const u8) ?sql.Value {
    if (std.mem.eql(u8, v, "n")) return .null;
    if (v.len < 2 or v[1] != ':') return null;
    const rest = v[2..];
    return switch (v[0]) {
        'i' => .{ .int = dohost.parseInt(rest) orelse return null },
        'f' => .{ .float = @bitCast(std.fmt.parseInt(u64, rest, 16) catch return null) },
        't' => .{ .text = rest },
        'b' => .{ .blob = parseHex(a, rest) orelse return null },
        else => null,
    };
}

/// Every "p" query parameter in order; null when one is malformed.
fn sqlParams(req: *const Request) !?[]sql.Value {
    var params: std.ArrayList(sql.Value) = .empty;
    var it = std.mem.splitScalar(u8, req.query, '&');
    while (it.next()) |part| {
        if (!std.mem.startsWith(u8, part, "p=")) continue;
        const v = try dohost.percentDecode(req.arena, part[2..]);
        try params.append(req.arena, parseValue(req.arena, v) orelse return null);
    }
    return params.items;
}

fn putValue(t: *Text, v: sql.Value) !void {
    switch (v) {
        .null => try t.put("n"),
        .int => |i| {
            try t.put("i:");
            try t.int(i);
        },
        .float => |f| {
            var bits: [8]u8 = undefined;
            std.mem.writeInt(u64, &bits, @bitCast(f), .big);
            try t.put("f:");
            try putHex(t, &bits);
        },
        .text => |s| {
            try t.put("t:");
            try t.put(s);
        },
        .blob => |b| {
            try t.put("b:");
            try putHex(t, b);
        },
    }
}

fn routeSql(req: *const Request) !Response {
    const a = req.arena;
    const params = (try sqlParams(req)) orelse return Response.text(400, "bad parameter\n");
    const res = sql.exec(a, req.body, params) catch |e| return replyStatus(a, 200, dohost.statusOf(e));
    var t: Text = .{ .a = a };
    try t.put("columns=");
    for (res.columns, 0..) |c, i| {
        if (i > 0) try t.put(",");
        try t.put(c);
    }
    try t.put("\n");
    var rows = res.rows();
    while (rows.next() catch |e| return replyStatus(a, 200, dohost.statusOf(e))) |row| {
        try t.put("row=");
        for (row, 0..) |v, i| {
            if (i > 0) try t.put(",");
            try putValue(&t, v);
        }
        try t.put("\n");
    }
    try t.put("rows=");
    try t.int(@intCast(res.row_count));
    try t.put(" read=");
    try t.int(@intCast(res.rows_read));
    try t.put(" written=");
    try t.int(@intCast(res.rows_written));
    return plain(200, t.list.items);
}

const from_header = [_]dohost.Header{.{ .name = "x-from", .value = "kvtest" }};

fn routeCall(req: *const Request) !Response {
    const a = req.arena;
    var creq: calls.Request = .{ .headers = &from_header, .body = req.body };
    if (try req.queryParam("method")) |m| creq.method = m;
    if (try req.queryParam("path")) |p| creq.path = p;
    if (try req.queryParam("query")) |q| creq.query = q;
    const class = (try req.queryParam("class")) orelse "";
    const result = if (try req.queryParam("id")) |id|
        calls.byId(a, class, id, creq)
    else
        calls.byName(a, class, (try req.queryParam("name")) orelse "", creq);
    const resp = result catch |e| return replyStatus(a, 200, dohost.statusOf(e));
    var t: Text = .{ .a = a };
    try t.put("status=");
    try t.int(resp.status);
    for (resp.headers) |h| {
        try t.put("\nheader:");
        try t.put(h.name);
        try t.put("=");
        try t.put(h.value);
    }
    try t.put("\nbody_len=");
    try t.int(@intCast(resp.body.len));
    try t.put("\nbody=");
    try t.put(resp.body);
    return plain(200, t.list.items);
}

/// "<class> <id> <name or (none)>".
fn replyRef(a: Allocator, ref: calls.ObjectRef) !Response {
    var t: Text = .{ .a = a };
    try t.put(ref.class);
    try t.put(" ");
    try t.put(ref.id);
    try t.put(" ");
    try t.put(ref.name orelse "(none)");
    return plain(200, t.list.items);
}

pub fn fetch(req: *const Request) !?Response {
    const a = req.arena;
    const p = req.path;
    const eql = std.mem.eql;
    if (eql(u8, p, "/get")) {
        const v = storage.get(a, try keyParam(req)) catch |e| return try replyStatus(a, 400, dohost.statusOf(e));
        if (v) |value| return .{ .content_type = "application/octet-stream", .body = value };
        return try replyStatus(a, 404, dohost.statusOf(error.NotFound));
    }
    if (eql(u8, p, "/put")) return try replyStatus(a, 200, statusOf(storage.put(try keyParam(req), req.body)));
    if (eql(u8, p, "/delete")) return try replyStatus(a, 200, statusOf(storage.delete(try keyParam(req))));
    if (eql(u8, p, "/put_many")) return try replyStatus(a, 200, statusOf(storage.putMany(a, try parseForm(req))));
    if (eql(u8, p, "/get_many")) return try replyGetMany(a, try formKeys(req));
    if (eql(u8, p, "/delete_many")) return try replyStatus(a, 200, statusOf(storage.deleteMany(a, try formKeys(req))));
    if (eql(u8, p, "/many")) return try routeMany(req);
    if (eql(u8, p, "/fill")) return try routeFill(req);
    if (eql(u8, p, "/list")) return try routeList(req);
    if (eql(u8, p, "/delete_all")) return try replyStatus(a, 200, statusOf(storage.deleteAll()));
    if (eql(u8, p, "/put_then_trap")) {
        for ([_][]const u8{ "trap1", "trap2", "trap3" }) |k| storage.put(k, "1") catch {};
        @trap();
    }
    if (eql(u8, p, "/put_big")) return try routePutBig(req);
    if (eql(u8, p, "/get_big")) return try routeGetBig(req);
    if (eql(u8, p, "/log")) {
        const level = try intParam(req, "level", 1);
        return try replyStatus(a, 200, statusOf(dohost.log.write(@truncate(level), req.body)));
    }
    if (eql(u8, p, "/now")) {
        var t: Text = .{ .a = a };
        try t.int(dohost.nowMs());
        return plain(200, t.list.items);
    }
    if (eql(u8, p, "/random")) return try routeRandom(req, false);
    if (eql(u8, p, "/random_raw")) return try routeRandom(req, true);
    if (eql(u8, p, "/last_error")) return try routeLastError(a);
    if (eql(u8, p, "/init_count")) {
        var t: Text = .{ .a = a };
        try t.int(init_runs);
        return plain(200, t.list.items);
    }
    if (eql(u8, p, "/echo")) return try routeEcho(req);
    if (eql(u8, p, "/status")) {
        const code: u16 = @truncate(@as(u64, @bitCast(try intParam(req, "code", 200))));
        return sendOrStatus(a, .{ .status = code });
    }
    if (eql(u8, p, "/big_response")) return routeBigResponse(req);
    if (eql(u8, p, "/headers")) return .{ .content_type = "text/plain", .headers = &extra_headers, .body = "headers" };
    if (eql(u8, p, "/twice")) {
        try dohost.respond(Response.text(200, "first"));
        return Response.text(200, "second");
    }
    if (eql(u8, p, "/no_response")) return null;
    if (eql(u8, p, "/fail")) {
        storage.put("fail", "1") catch {};
        try dohost.respond(Response.text(200, "this response must not be sent\n"));
        return dohost.failEvent(@truncate(try intParam(req, "rc", 1)));
    }
    if (eql(u8, p, "/alarm_set")) return try routeAlarmSet(req, false);
    if (eql(u8, p, "/alarm_in")) return try routeAlarmSet(req, true);
    if (eql(u8, p, "/alarm_get")) return try routeAlarmGet(a);
    if (eql(u8, p, "/alarm_delete")) return try replyStatus(a, 200, statusOf(dohost.alarm.delete()));
    if (eql(u8, p, "/alarm_calls")) {
        var t: Text = .{ .a = a };
        try t.int(alarm_calls);
        return plain(200, t.list.items);
    }
    if (eql(u8, p, "/put_then_alarm_then_trap")) {
        storage.put("t", "1") catch {};
        dohost.alarm.set(dohost.nowMs() + 1000) catch {};
        @trap();
    }
    if (eql(u8, p, "/sql")) return try routeSql(req);
    if (eql(u8, p, "/call")) return try routeCall(req);
    if (eql(u8, p, "/whoami")) {
        const ref = calls.objectInfo(a) catch |e| return try replyStatus(a, 200, dohost.statusOf(e));
        return try replyRef(a, ref);
    }
    if (eql(u8, p, "/bookmark_current")) {
        const b = dohost.bookmarks.current(a) catch |e| return try replyStatus(a, 200, dohost.statusOf(e));
        return plain(200, b);
    }
    if (eql(u8, p, "/bookmark_for_time")) {
        const v = (try req.queryParam("ms")) orelse return Response.text(400, "need ms=<integer>\n");
        const ms = dohost.parseInt(v) orelse return Response.text(400, "need ms=<integer>\n");
        const b = dohost.bookmarks.forTime(a, ms) catch |e| return try replyStatus(a, 200, dohost.statusOf(e));
        return plain(200, b);
    }
    if (eql(u8, p, "/bookmark_restore")) {
        const st = statusOf(dohost.bookmarks.restore(req.body));
        if ((try req.queryParam("then_fail")) != null) {
            storage.put("fail", "1") catch {};
            return dohost.failEvent(1);
        }
        return try replyStatus(a, 200, st);
    }
    if (eql(u8, p, "/caller")) {
        return try replyRef(a, calls.caller(req) orelse return Response{ .content_type = "text/plain", .body = "none" });
    }
    return Response.text(404, "no route\n");
}

comptime {
    dohost.serve(@This());
}
