//! WebSockets for Zig guests (abi/README.md section 5 "WebSockets", abi/websocket.cddl).
//! Reached as `dohost.websocket`.
//!
//! The host owns the connections, not the activation: the instance may be dropped while
//! clients stay connected (hibernation), and the next message re-creates it (`init` runs
//! again) with its connections, their tags and attachments intact. So keep nothing about
//! a connection in globals: put it in its tags (fixed at accept) or its attachment.
//!
//! Accept in `fetch`, then declare the handlers you want next to `fetch`; `dohost.serve`
//! exports them:
//!
//!     pub fn fetch(req: *const dohost.Request) !?dohost.Response {
//!         if (dohost.websocket.isUpgrade(req)) {
//!             _ = try dohost.websocket.accept(&.{"member"}); // the answer is the 101
//!             return null;
//!         }
//!         ...
//!     }
//!     pub fn webSocketMessage(arena: std.mem.Allocator, msg: dohost.websocket.Message) !void
//!     pub fn webSocketClose(arena: std.mem.Allocator, ev: dohost.websocket.Close) !void   // optional
//!     pub fn webSocketError(arena: std.mem.Allocator, ev: dohost.websocket.Failure) !void // optional
//!
//! `webSocketMessage` is what lets a module accept at all (`accept` is
//! `error.NotSupported` without it). Each of these is an ordinary event: its own
//! transaction, an error fails it (writes rolled back, sends dropped, the connection stays
//! open). Sends and closes are output: they leave once the event's writes are durable.

const std = @import("std");
const dohost = @import("dohost.zig");
const cbor = dohost.cbor;

const Allocator = std.mem.Allocator;
const Error = dohost.Error;
const check = dohost.check;
const addr = dohost.addr;
const sdk = dohost.internal;

/// The WebSocket imports of module `dohost`, as declared by the ABI. Connection ids and
/// kinds are i32 on the wasm side; ids are always > 0.
pub const raw = struct {
    pub extern "dohost" fn ws_accept(tags: usize, tags_len: usize) i32;
    pub extern "dohost" fn ws_send(conn_id: u32, kind: i32, ptr: usize, len: usize) i32;
    pub extern "dohost" fn ws_send_tag(tag: usize, tag_len: usize, kind: i32, ptr: usize, len: usize) i32;
    pub extern "dohost" fn ws_close(conn_id: u32, code: i32, reason: usize, reason_len: usize) i32;
    pub extern "dohost" fn ws_list(tag: usize, tag_len: usize, out: usize, cap: usize) i32;
    pub extern "dohost" fn ws_attachment_set(conn_id: u32, ptr: usize, len: usize) i32;
    pub extern "dohost" fn ws_attachment_get(conn_id: u32, out: usize, cap: usize) i32;
    pub extern "dohost" fn ws_auto_response(req: usize, req_len: usize, resp: usize, resp_len: usize) i32;
};

/// A connection id, given by the host (1 .. 2^31-1, never reused within a host process).
pub const ConnId = u32;

/// Limits the host enforces (abi/README.md): checked there, named here for callers.
pub const max_tags = 10;
pub const max_tag_bytes = 256;
pub const max_attachment_bytes = 16 * 1024;
pub const max_auto_response_bytes = 1024;
pub const max_reason_bytes = 123;

/// A message's payload: a text frame (UTF-8) or a binary frame.
pub const Data = union(enum) {
    text: []const u8,
    binary: []const u8,

    fn kind(d: Data) i32 {
        return switch (d) {
            .text => 0,
            .binary => 1,
        };
    }

    fn slice(d: Data) []const u8 {
        return switch (d) {
            .text, .binary => |s| s,
        };
    }
};

/// True when the request asks for a WebSocket upgrade (`upgrade: websocket`, any case).
/// `accept` still checks the rest of the handshake.
pub fn isUpgrade(req: *const dohost.Request) bool {
    const v = req.header("upgrade") orelse return false;
    return std.ascii.eqlIgnoreCase(std.mem.trim(u8, v, " \t"), "websocket");
}

fn encodeTags(e: *cbor.Encoder, tags: []const []const u8) void {
    e.array(tags.len);
    for (tags) |t| e.text(t);
}

/// Accepts this fetch event's WebSocket upgrade with up to 10 tags (each 1..256 bytes of
/// UTF-8); returns the connection's id. The event's answer becomes the 101 handshake (a
/// response set or returned afterwards is ignored); the connection opens once the event
/// succeeds and its writes are durable. Errors: `NotSupported` (not an upgrade request
/// from HTTP, or no `webSocketMessage` handler), `InvalidArgument` (tags, accepted
/// twice), `LimitExceeded` (32,768 connections on the object), `QuotaExceeded` (the
/// tenant's connection quota).
pub fn accept(tags: []const []const u8) Error!ConnId {
    var buf: [256]u8 = undefined;
    var m = cbor.Encoder.measure();
    encodeTags(&m, tags);
    const a = dohost.arena();
    const input = if (m.len <= buf.len) buf[0..m.len] else try a.alloc(u8, m.len);
    var e = cbor.Encoder.init(input);
    encodeTags(&e, tags);
    return check(raw.ws_accept(addr(input), input.len));
}

/// Sends one message to a connection. `NotFound` when it is not open, `BadEncoding` for
/// text that is not UTF-8, `ValueTooLarge` above the host's message limit (1 MiB).
pub fn send(id: ConnId, data: Data) Error!void {
    const s = data.slice();
    _ = try check(raw.ws_send(id, data.kind(), addr(s), s.len));
}

pub fn sendText(id: ConnId, text: []const u8) Error!void {
    return send(id, .{ .text = text });
}

pub fn sendBinary(id: ConnId, bytes: []const u8) Error!void {
    return send(id, .{ .binary = bytes });
}

/// Sends one message to every open connection that has `tag` (every open connection when
/// `tag` is null); returns how many it went to.
pub fn sendTag(tag: ?[]const u8, data: Data) Error!u32 {
    const t = tag orelse "";
    if (tag != null and t.len == 0) return error.InvalidArgument; // "" would mean "all"
    const s = data.slice();
    return check(raw.ws_send_tag(addr(t), t.len, data.kind(), addr(s), s.len));
}

/// Sends one message to every open connection; returns how many it went to.
pub fn broadcast(data: Data) Error!u32 {
    return sendTag(null, data);
}

/// Close codes an object may send.
pub const close_normal: u16 = 1000;

/// Closes a connection with `code` (1000 or 3000..4999) and a reason of at most 123 bytes.
/// The object gets no close event for a connection it closes itself.
pub fn close(id: ConnId, code: u16, reason: []const u8) Error!void {
    _ = try check(raw.ws_close(id, code, addr(reason), reason.len));
}

/// Sets a connection's attachment (at most 16 KiB; empty removes it). The host keeps it
/// with the connection across hibernation; the change is kept only if the event succeeds.
pub fn setAttachment(id: ConnId, bytes: []const u8) Error!void {
    _ = try check(raw.ws_attachment_set(id, addr(bytes), bytes.len));
}

/// A connection's attachment, allocated with `gpa`; null when it has none.
pub fn attachment(gpa: Allocator, id: ConnId) Error!?[]u8 {
    const buf = try gpa.alloc(u8, dohost.scratch_bytes);
    const out = try sdk.take_output(gpa, buf, raw.ws_attachment_get(id, @intFromPtr(buf.ptr), buf.len));
    if (out.len == 0) {
        gpa.free(out);
        return null;
    }
    return out;
}

/// Sets the object's auto-response: a text message equal to `request` (byte for byte) is
/// answered with `response` by the host, without an event and without waking a hibernated
/// object. Each at most 1 KiB; `request` must not be empty (see `clearAutoResponse`).
/// Kept with the object's connections: set it in `init` so it is back after a restart.
pub fn setAutoResponse(request: []const u8, response: []const u8) Error!void {
    if (request.len == 0) return error.InvalidArgument;
    _ = try check(raw.ws_auto_response(addr(request), request.len, addr(response), response.len));
}

pub fn clearAutoResponse() Error!void {
    _ = try check(raw.ws_auto_response(0, 0, 0, 0));
}

// ---- Listing connections (ws-list) ------------------------------------------------------

/// One open connection.
pub const Info = struct {
    id: ConnId,
    tags: []const []const u8,
    /// When the host last answered it with the auto-response (ms since the Unix epoch).
    auto_response_at: ?i64 = null,

    /// True when the connection has this tag.
    pub fn hasTag(info: *const Info, tag: []const u8) bool {
        for (info.tags) |t| if (std.mem.eql(u8, t, tag)) return true;
        return false;
    }
};

/// The object's open connections (only those with `tag`, when given), in the order they
/// were accepted, allocated with `gpa`. Includes this event's own accepts and excludes
/// its own closes.
pub fn list(gpa: Allocator, tag: ?[]const u8) Error![]Info {
    const t = tag orelse "";
    if (tag != null and t.len == 0) return error.InvalidArgument;
    const buf = try gpa.alloc(u8, dohost.scratch_bytes);
    const out = try sdk.take_output(gpa, buf, raw.ws_list(addr(t), t.len, @intFromPtr(buf.ptr), buf.len));
    var d = cbor.Decoder.init(out);
    const infos = try gpa.alloc(Info, try d.array());
    for (infos) |*info| info.* = try decodeInfo(gpa, &d);
    if (!d.done()) return error.InvalidCbor;
    return infos;
}

/// How many connections are open (with `tag`, when given).
pub fn count(gpa: Allocator, tag: ?[]const u8) Error!usize {
    return (try list(gpa, tag)).len;
}

fn decodeInfo(gpa: Allocator, d: *cbor.Decoder) Error!Info {
    var info: Info = .{ .id = 0, .tags = &.{} };
    const n = try d.map();
    for (0..n) |_| {
        const k = try d.text();
        if (std.mem.eql(u8, k, "id")) {
            info.id = try decodeId(d);
        } else if (std.mem.eql(u8, k, "tags")) {
            info.tags = try decodeTags(gpa, d);
        } else if (std.mem.eql(u8, k, "auto_response_at")) {
            info.auto_response_at = try d.int();
        } else {
            try d.skip();
        }
    }
    return info;
}

fn decodeId(d: *cbor.Decoder) Error!ConnId {
    return std.math.cast(ConnId, try d.uint()) orelse error.InvalidCbor;
}

fn decodeTags(gpa: Allocator, d: *cbor.Decoder) Error![]const []const u8 {
    const tags = try gpa.alloc([]const u8, try d.array());
    for (tags) |*t| t.* = try d.text();
    return tags;
}

// ---- Events (ws-message, ws-close, ws-error) --------------------------------------------

/// A message arrived on one of the object's connections.
pub const Message = struct {
    id: ConnId,
    tags: []const []const u8,
    data: Data,

    pub fn hasTag(m: *const Message, tag: []const u8) bool {
        for (m.tags) |t| if (std.mem.eql(u8, t, tag)) return true;
        return false;
    }
};

/// A connection the client ended, or that failed (after its `Failure`). Not delivered for
/// connections the object closed itself.
pub const Close = struct {
    id: ConnId,
    tags: []const []const u8,
    /// The client's code; 1005 when its close frame had none; 1006 without a close frame.
    code: u16,
    reason: []const u8,
    /// True when the client sent a close frame (the closing handshake ran).
    clean: bool,
};

/// A connection failed (protocol violation, a message above the limit, the client
/// vanished); its `Close` (clean = false) follows.
pub const Failure = struct {
    id: ConnId,
    tags: []const []const u8,
    message: []const u8,
};

/// Decodes one of the three event inputs: the common "id" and "tags" and the fields of `T`.
fn decodeEvent(comptime T: type, gpa: Allocator, input: []const u8) Error!T {
    var d = cbor.Decoder.init(input);
    var ev: T = undefined;
    ev.id = 0;
    ev.tags = &.{};
    var have_data = false;
    switch (T) {
        Message => {},
        Close => {
            ev.code = 1005;
            ev.reason = "";
            ev.clean = false;
        },
        Failure => ev.message = "",
        else => @compileError("not a WebSocket event"),
    }
    const n = try d.map();
    for (0..n) |_| {
        const k = try d.text();
        if (std.mem.eql(u8, k, "id")) {
            ev.id = try decodeId(&d);
        } else if (std.mem.eql(u8, k, "tags")) {
            ev.tags = try decodeTags(gpa, &d);
        } else if (T == Message and std.mem.eql(u8, k, "data")) {
            ev.data = switch (d.peek()) {
                .text => .{ .text = try d.text() },
                .bytes => .{ .binary = try d.bytes() },
                else => return error.InvalidCbor,
            };
            have_data = true;
        } else if (T == Close and std.mem.eql(u8, k, "code")) {
            ev.code = std.math.cast(u16, try d.uint()) orelse return error.InvalidCbor;
        } else if (T == Close and std.mem.eql(u8, k, "reason")) {
            ev.reason = try d.text();
        } else if (T == Close and std.mem.eql(u8, k, "clean")) {
            ev.clean = try d.boolean();
        } else if (T == Failure and std.mem.eql(u8, k, "message")) {
            ev.message = try d.text();
        } else {
            try d.skip();
        }
    }
    if (!d.done() or ev.id == 0) return error.InvalidCbor;
    if (T == Message and !have_data) return error.InvalidCbor;
    return ev;
}

/// Exports `dohost_ws_message`, `dohost_ws_close` and `dohost_ws_error` for the handlers
/// `App` declares (`webSocketMessage`, `webSocketClose`, `webSocketError`). Called by
/// `dohost.serve`.
pub fn serve(comptime App: type) void {
    const W = struct {
        fn run(comptime T: type, comptime what: []const u8, comptime handler: anytype, len: i32) i32 {
            sdk.begin_event();
            const input = sdk.read_input(len) catch |e| return sdk.fail("reading the WebSocket event", e);
            const ev = decodeEvent(T, dohost.arena(), input) catch |e| return sdk.fail("decoding the WebSocket event", e);
            handler(dohost.arena(), ev) catch |e| return sdk.fail(what, e);
            return 0;
        }

        fn message(len: i32) callconv(.c) i32 {
            return run(Message, "webSocketMessage", App.webSocketMessage, len);
        }

        fn closed(len: i32) callconv(.c) i32 {
            return run(Close, "webSocketClose", App.webSocketClose, len);
        }

        fn failed(len: i32) callconv(.c) i32 {
            return run(Failure, "webSocketError", App.webSocketError, len);
        }
    };
    if (@hasDecl(App, "webSocketMessage")) @export(&W.message, .{ .name = "dohost_ws_message" });
    if (@hasDecl(App, "webSocketClose")) @export(&W.closed, .{ .name = "dohost_ws_close" });
    if (@hasDecl(App, "webSocketError")) @export(&W.failed, .{ .name = "dohost_ws_error" });
}
