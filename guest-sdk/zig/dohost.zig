//! Zig guest SDK for dohost, guest ABI v1 (abi/README.md).
//!
//! Declare your handlers in a struct (or your root file) and serve it:
//!
//!     const dohost = @import("dohost");
//!
//!     pub fn fetch(req: *const dohost.Request) !dohost.Response {
//!         return dohost.Response.text(200, "hello\n");
//!     }
//!
//!     comptime {
//!         dohost.serve(@This());
//!     }
//!
//! `serve(App)` exports `dohost_abi_v1` and `dohost_fetch`, and `dohost_init` /
//! `dohost_alarm` when `App` declares them:
//!
//!     pub fn fetch(req: *const dohost.Request) !dohost.Response   // or !?Response, !void
//!     pub fn init(arena: std.mem.Allocator) !void                  // once per activation
//!     pub fn alarm(arena: std.mem.Allocator, info: dohost.AlarmInfo) !void  // see `alarm`
//!
//! An error returned by a handler fails the event: its storage writes are rolled back and
//! the caller gets 500. A `null` response (with `!?Response`) or `!void` sets none: the
//! last one passed to `respond` stands, or the host answers 204.
//!
//! Memory: `req.arena` (also `dohost.arena()`) is an arena reset when the next event
//! starts. The request, and everything the SDK returns when you pass it the arena, lives
//! there. State that must outlive an event goes in globals allocated from
//! `std.heap.wasm_allocator` (or in storage: the host may drop the activation between any
//! two events).
//!
//! Beyond storage, alarms and logging: `dohost.calls` (call.zig) calls other objects of
//! the tenant and reads the caller of a call, `dohost.sql` (sql.zig) runs SQL on a class
//! deployed with storage="sqlite". Both take the allocator their results live in.
//!
//! Build (see guest-sdk/README.md):
//!     python -m ziglang build-exe -target wasm32-freestanding -fno-entry -rdynamic \
//!         -O ReleaseSmall --dep dohost -Mroot=app.zig -Mdohost=guest-sdk/zig/dohost.zig

const std = @import("std");
pub const cbor = @import("cbor.zig");
/// SQL (`sql_exec`) for classes deployed with storage="sqlite": sql.zig.
pub const sql = @import("sql.zig");
/// Calls to other objects (`call`, `object_info`): call.zig.
pub const calls = @import("call.zig");
pub const websocket = @import("websocket.zig");
/// The object's bookmarks (point-in-time recovery of its storage): bookmark.zig.
pub const bookmarks = @import("bookmark.zig");

const Allocator = std.mem.Allocator;

// ---- Status codes (abi/README.md section 6) --------------------------------------------

/// Every failure an SDK call reports. The first 19 are the ABI's codes -1 .. -19;
/// `UnknownStatus` is a negative code this SDK does not know; `OutOfMemory` (-100) and
/// `InvalidCbor` (-101, "sdk_decode": the host sent something we could not decode) are
/// the SDK's own.
pub const Error = error{
    Internal,
    BadPointer,
    NotFound,
    KeyTooLarge,
    ValueTooLarge,
    TooManyKeys,
    QuotaExceeded,
    BadEncoding,
    NotSupported,
    NoResult,
    InvalidArgument,
    StorageError,
    BufferTooSmall,
    LimitExceeded,
    CallCycle,
    CallDepth,
    CallFailed,
    SqlError,
    SqlRefused,
    UnknownStatus,
    OutOfMemory,
    InvalidCbor,
};

const status_errors = [_]Error{
    error.Internal,      error.BadPointer,      error.NotFound,     error.KeyTooLarge,
    error.ValueTooLarge, error.TooManyKeys,     error.QuotaExceeded, error.BadEncoding,
    error.NotSupported,  error.NoResult,        error.InvalidArgument, error.StorageError,
    error.BufferTooSmall, error.LimitExceeded,  error.CallCycle,    error.CallDepth,
    error.CallFailed,    error.SqlError,        error.SqlRefused,
};

const status_names = [_][]const u8{
    "internal",       "bad_pointer",    "not_found",     "key_too_large",
    "value_too_large", "too_many_keys", "quota_exceeded", "bad_encoding",
    "not_supported",  "no_result",      "invalid_argument", "storage_error",
    "buffer_too_small", "limit_exceeded", "call_cycle",  "call_depth",
    "call_failed",    "sql_error",      "sql_refused",
};

pub const status_out_of_memory: i32 = -100;
pub const status_sdk_decode: i32 = -101;

/// The last negative status that mapped to `error.UnknownStatus`.
pub var unknown_status: i32 = 0;

/// A status from an import: its value when >= 0, its error otherwise.
pub fn check(status: i32) Error!u32 {
    if (status >= 0) return @intCast(status);
    if (status >= -@as(i32, status_errors.len)) return status_errors[@intCast(-status - 1)];
    if (status == status_out_of_memory) return error.OutOfMemory;
    if (status == status_sdk_decode) return error.InvalidCbor;
    unknown_status = status;
    return error.UnknownStatus;
}

/// The ABI status of an error: -3 for `error.NotFound`, ...; -1 for errors of your own.
pub fn statusOf(err: anyerror) i32 {
    inline for (status_errors, 0..) |e, i| {
        if (err == e) return -@as(i32, i) - 1;
    }
    return switch (err) {
        error.OutOfMemory => status_out_of_memory,
        error.InvalidCbor => status_sdk_decode,
        error.UnknownStatus => unknown_status,
        else => -1,
    };
}

/// The stable name of a status: "ok" for >= 0, "not_found", ..., "unknown".
pub fn statusName(status: i32) []const u8 {
    if (status >= 0) return "ok";
    if (status >= -@as(i32, status_names.len)) return status_names[@intCast(-status - 1)];
    if (status == status_out_of_memory) return "out_of_memory";
    if (status == status_sdk_decode) return "sdk_decode";
    return "unknown";
}

// ---- Raw imports (abi/README.md section 5) ---------------------------------------------

/// One function per import of module `dohost`. Pointers are passed as addresses (an empty
/// slice as 0); the SDK functions below wrap these.
///
/// The imports of calls and SQL are declared beside their wrappers: `calls.raw`,
/// `sql.raw`. Adding an import is a declaration plus a wrapper (see `alarm`).
pub const raw = struct {
    pub extern "dohost" fn input_read(out: usize, cap: usize) i32;
    pub extern "dohost" fn response_set(ptr: usize, len: usize) i32;
    pub extern "dohost" fn result_read(out: usize, cap: usize) i32;
    pub extern "dohost" fn last_error(out: usize, cap: usize) i32;
    pub extern "dohost" fn kv_get(key: usize, key_len: usize, out: usize, cap: usize) i32;
    pub extern "dohost" fn kv_put(key: usize, key_len: usize, val: usize, val_len: usize) i32;
    pub extern "dohost" fn kv_delete(key: usize, key_len: usize) i32;
    pub extern "dohost" fn kv_get_many(keys: usize, len: usize, out: usize, cap: usize) i32;
    pub extern "dohost" fn kv_put_many(entries: usize, len: usize) i32;
    pub extern "dohost" fn kv_delete_many(keys: usize, len: usize) i32;
    pub extern "dohost" fn kv_list(opts: usize, len: usize, out: usize, cap: usize) i32;
    pub extern "dohost" fn kv_delete_all() i32;
    pub extern "dohost" fn log(level: i32, ptr: usize, len: usize) i32;
    pub extern "dohost" fn now_ms() i64;
    pub extern "dohost" fn random_fill(ptr: usize, len: usize) i32;
    pub extern "dohost" fn alarm_set(time_ms: i64) i32;
    /// Writes the time as a little-endian i64 (8 bytes) at `out` and returns 1, or 0.
    pub extern "dohost" fn alarm_get(out: usize) i32;
    pub extern "dohost" fn alarm_delete() i32;
};

/// The address of a slice for an import (0 for an empty one, whose pointer may be junk).
pub fn addr(s: []const u8) usize {
    return if (s.len == 0) 0 else @intFromPtr(s.ptr);
}

// ---- Event arena and the output-buffer rule --------------------------------------------

/// The event arena: bump allocation, all of it released when the next event starts.
/// Chunks come straight from memory.grow, sized to what is asked (in 64 KiB pages: the
/// general-purpose allocators round large blocks up to a power of two, which would put a
/// 33 MiB response out of reach of a 128 MiB memory), and are kept for later events on
/// a free list (wasm memory cannot shrink).
const EventArena = struct {
    const Chunk = struct {
        next: ?*Chunk,
        size: usize, // bytes, header included
    };
    const page = 65536;

    used: ?*Chunk = null, // the current chunk first
    spare: ?*Chunk = null, // chunks of earlier events
    top: usize = 0, // next free byte of the current chunk
    end: usize = 0,

    const vtable: Allocator.VTable = .{ .alloc = alloc, .resize = resize, .remap = remap, .free = free };

    fn chunk(self: *EventArena, min: usize) ?*Chunk {
        var link = &self.spare;
        while (link.*) |c| : (link = &c.next) {
            if (c.size - @sizeOf(Chunk) >= min) { // first fit
                link.* = c.next;
                return c;
            }
        }
        const size = std.mem.alignForward(usize, @max(min + @sizeOf(Chunk), page), page);
        const first = @wasmMemoryGrow(0, size / page);
        if (first < 0) return null;
        const c: *Chunk = @ptrFromInt(@as(usize, @intCast(first)) * page);
        c.* = .{ .next = null, .size = size };
        return c;
    }

    fn alloc(ctx: *anyopaque, len: usize, alignment: std.mem.Alignment, _: usize) ?[*]u8 {
        const self: *EventArena = @ptrCast(@alignCast(ctx));
        const a = alignment.toByteUnits();
        var p = std.mem.alignForward(usize, self.top, a);
        if (self.used == null or len > self.end -| p) {
            const c = self.chunk(len + a) orelse return null;
            c.next = self.used;
            self.used = c;
            self.top = @intFromPtr(c) + @sizeOf(Chunk);
            self.end = @intFromPtr(c) + c.size;
            p = std.mem.alignForward(usize, self.top, a);
        }
        self.top = p + len;
        return @ptrFromInt(p);
    }

    fn resize(ctx: *anyopaque, memory: []u8, _: std.mem.Alignment, new_len: usize, _: usize) bool {
        const self: *EventArena = @ptrCast(@alignCast(ctx));
        const start = @intFromPtr(memory.ptr);
        if (start + memory.len == self.top) { // the latest allocation grows or shrinks
            if (new_len > self.end - start) return false;
            self.top = start + new_len;
            return true;
        }
        return new_len <= memory.len;
    }

    fn remap(ctx: *anyopaque, memory: []u8, alignment: std.mem.Alignment, new_len: usize, ra: usize) ?[*]u8 {
        return if (resize(ctx, memory, alignment, new_len, ra)) memory.ptr else null;
    }

    fn free(ctx: *anyopaque, memory: []u8, _: std.mem.Alignment, _: usize) void {
        const self: *EventArena = @ptrCast(@alignCast(ctx));
        if (@intFromPtr(memory.ptr) + memory.len == self.top) self.top = @intFromPtr(memory.ptr);
    }

    fn reset(self: *EventArena) void {
        while (self.used) |c| {
            self.used = c.next;
            c.next = self.spare;
            self.spare = c;
        }
        self.top = 0;
        self.end = 0;
    }
};

var event_arena: EventArena = .{};

/// The event arena: freed when the next event starts.
pub fn arena() Allocator {
    return .{ .ptr = &event_arena, .vtable = &EventArena.vtable };
}

fn beginEvent() void {
    event_arena.reset();
}

/// Free space offered to an import that returns bytes before falling back to result_read.
pub const scratch_bytes = 4096;

/// The output-buffer rule (abi/README.md section 2): `status` is what the import returned
/// for `buf`. A result that fitted is kept in place (the buffer shrinks to it); a larger
/// one is read with result_read into a buffer of its size. (Public for the SDK's other
/// files and for wrappers of raw imports.)
pub fn takeOutput(gpa: Allocator, buf: []u8, status: i32) Error![]u8 {
    const n = check(status) catch |e| {
        gpa.free(buf);
        return e;
    };
    if (n <= buf.len) {
        if (n == 0) {
            gpa.free(buf);
            return gpa.alloc(u8, 0);
        }
        if (gpa.resize(buf, n)) return buf[0..n];
        const copy = try gpa.dupe(u8, buf[0..n]);
        gpa.free(buf);
        return copy;
    }
    gpa.free(buf);
    const big = try gpa.alloc(u8, n);
    errdefer gpa.free(big);
    if (try check(raw.result_read(@intFromPtr(big.ptr), n)) != n) return error.InvalidCbor;
    return big;
}

/// Encodes with `encodeFn(e, arg)` into `gpa`: one pass to measure, one to write.
pub fn encodeAlloc(gpa: Allocator, comptime encodeFn: anytype, arg: anytype) Error![]u8 {
    var m = cbor.Encoder.measure();
    encodeFn(&m, arg);
    const buf = try gpa.alloc(u8, m.len);
    var e = cbor.Encoder.init(buf);
    encodeFn(&e, arg);
    return buf;
}

// ---- Requests (abi/request.cddl) --------------------------------------------------------

pub const Header = struct {
    name: []const u8,
    value: []const u8,
};

/// A fetch event's request. Strings are slices of the event arena.
pub const Request = struct {
    method: []const u8 = "",
    /// Begins with "/"; percent-encoding kept.
    path: []const u8 = "",
    /// The raw query string without "?"; "" when absent.
    query: []const u8 = "",
    /// In arrival order, names lower case, duplicates kept.
    headers: []const Header = &.{},
    body: []const u8 = "",
    /// The event arena (reset when the next event starts).
    arena: Allocator,

    fn decode(gpa: Allocator, input: []const u8) Error!Request {
        var d = cbor.Decoder.init(input);
        var req: Request = .{ .arena = gpa };
        const n = try d.map();
        for (0..n) |_| {
            const k = try d.text();
            if (std.mem.eql(u8, k, "method")) {
                req.method = try d.text();
            } else if (std.mem.eql(u8, k, "path")) {
                req.path = try d.text();
            } else if (std.mem.eql(u8, k, "query")) {
                req.query = try d.text();
            } else if (std.mem.eql(u8, k, "headers")) {
                const count = try d.array();
                const hs = try gpa.alloc(Header, count);
                for (hs) |*h| {
                    if (try d.array() != 2) return error.InvalidCbor;
                    h.* = .{ .name = try d.text(), .value = try d.text() };
                }
                req.headers = hs;
            } else if (std.mem.eql(u8, k, "body")) {
                req.body = try d.bytes();
            } else {
                try d.skip(); // request.cddl: ignore keys we do not know
            }
        }
        if (!d.done()) return error.InvalidCbor;
        return req;
    }

    pub fn methodIs(req: *const Request, method: []const u8) bool {
        return std.mem.eql(u8, req.method, method);
    }

    pub fn pathIs(req: *const Request, path: []const u8) bool {
        return std.mem.eql(u8, req.path, path);
    }

    /// The first header with this name (case-insensitive).
    pub fn header(req: *const Request, name: []const u8) ?[]const u8 {
        for (req.headers) |h| {
            if (std.ascii.eqlIgnoreCase(h.name, name)) return h.value;
        }
        return null;
    }

    /// The first query parameter `name`, percent-decoded into the arena ('+' is a space);
    /// null when absent. "?a" and "?a=" give an empty value.
    pub fn queryParam(req: *const Request, name: []const u8) Error!?[]u8 {
        var it = std.mem.splitScalar(u8, req.query, '&');
        while (it.next()) |part| {
            const eq = std.mem.indexOfScalar(u8, part, '=');
            const key = if (eq) |i| part[0..i] else part;
            if (std.mem.eql(u8, key, name)) {
                return try percentDecode(req.arena, if (eq) |i| part[i + 1 ..] else "");
            }
        }
        return null;
    }

    /// `queryParam` parsed as a decimal integer; null when absent or not an integer.
    pub fn queryInt(req: *const Request, name: []const u8) Error!?i64 {
        const v = (try req.queryParam(name)) orelse return null;
        return parseInt(v);
    }
};

fn hexDigit(c: u8) ?u8 {
    return switch (c) {
        '0'...'9' => c - '0',
        'a'...'f' => c - 'a' + 10,
        'A'...'F' => c - 'A' + 10,
        else => null,
    };
}

/// Decodes %XX escapes and '+' (a space) into a new slice. A stray '%' stays as it is.
pub fn percentDecode(gpa: Allocator, s: []const u8) Error![]u8 {
    const out = try gpa.alloc(u8, s.len);
    var n: usize = 0;
    var i: usize = 0;
    while (i < s.len) : (i += 1) {
        if (s[i] == '%' and i + 2 < s.len) {
            if (hexDigit(s[i + 1])) |hi| if (hexDigit(s[i + 2])) |lo| {
                out[n] = hi << 4 | lo;
                n += 1;
                i += 2;
                continue;
            };
        }
        out[n] = if (s[i] == '+') ' ' else s[i];
        n += 1;
    }
    return out[0..n];
}

// ---- Responses (abi/response.cddl) -----------------------------------------------------

pub const Response = struct {
    /// 100..599 (the host refuses others with `bad_encoding`).
    status: u16 = 200,
    /// Sent as a content-type header before `headers` when set.
    content_type: ?[]const u8 = null,
    headers: []const Header = &.{},
    body: []const u8 = "",

    /// text/plain; charset=utf-8
    pub fn text(status: u16, body: []const u8) Response {
        return .{ .status = status, .content_type = "text/plain; charset=utf-8", .body = body };
    }

    /// application/json (the body is sent as given).
    pub fn json(status: u16, body: []const u8) Response {
        return .{ .status = status, .content_type = "application/json", .body = body };
    }

    fn encode(e: *cbor.Encoder, r: *const Response) void {
        e.map(3);
        e.text("status");
        e.uint(r.status);
        e.text("headers");
        e.array(r.headers.len + @intFromBool(r.content_type != null));
        if (r.content_type) |ct| {
            e.array(2);
            e.text("content-type");
            e.text(ct);
        }
        for (r.headers) |h| {
            e.array(2);
            e.text(h.name);
            e.text(h.value);
        }
        e.text("body");
        e.bytes(r.body);
    }
};

/// Sets the event's response now (the last one set wins). A fetch handler's returned
/// response is set this way; call it yourself to handle a refusal (`error.BadEncoding`
/// for a status out of range, `error.ValueTooLarge` for a body above the host's limit).
pub fn respond(r: Response) Error!void {
    const a = arena();
    const buf = try encodeAlloc(a, Response.encode, &r);
    defer a.free(buf);
    _ = try check(raw.response_set(addr(buf), buf.len));
}

// ---- Storage (abi/README.md section 5, abi/kv.cddl, abi/list.cddl) ---------------------

pub const Entry = struct {
    key: []const u8,
    value: []const u8,
};

/// Key/value storage. Keys and values are bytes; keys sort by their bytes. Limits: key
/// <= 2,048 bytes, key + value <= 2 MiB, at most 128 keys per `*Many` call. Results are
/// allocated with the allocator you pass (usually `req.arena`).
pub const storage = struct {
    /// The value of `key`, or null when it does not exist.
    pub fn get(gpa: Allocator, key: []const u8) Error!?[]u8 {
        const buf = try gpa.alloc(u8, scratch_bytes);
        const st = raw.kv_get(addr(key), key.len, @intFromPtr(buf.ptr), buf.len);
        return takeOutput(gpa, buf, st) catch |e| switch (e) {
            error.NotFound => null,
            else => e,
        };
    }

    pub fn put(key: []const u8, value: []const u8) Error!void {
        _ = try check(raw.kv_put(addr(key), key.len, addr(value), value.len));
    }

    /// True when the key existed.
    pub fn delete(key: []const u8) Error!bool {
        return try check(raw.kv_delete(addr(key), key.len)) == 1;
    }

    /// Deletes every key of the object.
    pub fn deleteAll() Error!void {
        _ = try check(raw.kv_delete_all());
    }

    fn encodeKeys(e: *cbor.Encoder, keys: []const []const u8) void {
        e.array(keys.len);
        for (keys) |k| e.bytes(k);
    }

    fn encodeEntries(e: *cbor.Encoder, entries: []const Entry) void {
        e.map(entries.len);
        for (entries) |en| {
            e.bytes(en.key);
            e.bytes(en.value);
        }
    }

    /// The values of up to 128 keys in one call: `result[i]` is the value of `keys[i]`,
    /// or null when that key does not exist.
    pub fn getMany(gpa: Allocator, keys: []const []const u8) Error![]?[]const u8 {
        const input = try encodeAlloc(gpa, encodeKeys, keys);
        defer gpa.free(input);
        const buf = try gpa.alloc(u8, scratch_bytes);
        const st = raw.kv_get_many(addr(input), input.len, @intFromPtr(buf.ptr), buf.len);
        const out = try takeOutput(gpa, buf, st);
        const values = try gpa.alloc(?[]const u8, keys.len);
        @memset(values, null);
        var d = cbor.Decoder.init(out);
        const n = try d.map();
        for (0..n) |_| {
            const k = try d.bytes();
            const v = try d.bytes();
            for (keys, 0..) |key, i| {
                if (std.mem.eql(u8, key, k)) values[i] = v; // a key asked twice gets it twice
            }
        }
        if (!d.done()) return error.InvalidCbor;
        return values;
    }

    /// Writes up to 128 entries, all or nothing.
    pub fn putMany(gpa: Allocator, entries: []const Entry) Error!void {
        const input = try encodeAlloc(gpa, encodeEntries, entries);
        defer gpa.free(input);
        _ = try check(raw.kv_put_many(addr(input), input.len));
    }

    /// Deletes up to 128 keys; returns how many existed.
    pub fn deleteMany(gpa: Allocator, keys: []const []const u8) Error!u32 {
        const input = try encodeAlloc(gpa, encodeKeys, keys);
        defer gpa.free(input);
        return check(raw.kv_delete_many(addr(input), input.len));
    }

    /// Which keys `list` returns. null means "not set"; an empty `start` or `end` is the
    /// empty key (so `.end = ""` lists nothing).
    pub const ListOptions = struct {
        /// Only keys that begin with these bytes.
        prefix: ?[]const u8 = null,
        /// First key (inclusive).
        start: ?[]const u8 = null,
        /// Stop before this key (exclusive).
        end: ?[]const u8 = null,
        /// Descending order; start and end keep their meaning.
        reverse: bool = false,
        /// At most this many entries; 0 means no limit.
        limit: u32 = 0,

        fn encode(e: *cbor.Encoder, o: *const ListOptions) void {
            const fields = [_]?[]const u8{ o.prefix, o.start, o.end };
            const names = [_][]const u8{ "prefix", "start", "end" };
            var n: usize = @as(usize, @intFromBool(o.reverse)) + @intFromBool(o.limit != 0);
            for (fields) |f| n += @intFromBool(f != null);
            e.map(n);
            for (fields, names) |f, name| {
                if (f) |v| {
                    e.text(name);
                    e.bytes(v);
                }
            }
            if (o.reverse) {
                e.text("reverse");
                e.boolean(true);
            }
            if (o.limit != 0) {
                e.text("limit");
                e.uint(o.limit);
            }
        }
    };

    /// Lists entries (the first kv_list call happens here); iterate with `next`. The SDK
    /// follows the host's `more` flag with further calls as you go.
    pub fn list(gpa: Allocator, opts: ListOptions) Error!List {
        var it: List = .{ .gpa = gpa, .opts = opts };
        try it.fetchPage();
        return it;
    }

    pub const List = struct {
        gpa: Allocator,
        /// A copy of the options; start/end advance as pages are read.
        opts: ListOptions,
        page: cbor.Decoder = cbor.Decoder.init(""),
        left: usize = 0,
        more: bool = false,
        returned: u32 = 0,
        /// kv_list calls made so far.
        pages: u32 = 0,
        last_key: ?[]const u8 = null,

        fn fetchPage(it: *List) Error!void {
            var o = it.opts;
            if (o.limit != 0) o.limit -= it.returned; // what is left of the caller's limit
            const input = try encodeAlloc(it.gpa, ListOptions.encode, &o);
            defer it.gpa.free(input);
            const buf = try it.gpa.alloc(u8, scratch_bytes);
            const st = raw.kv_list(addr(input), input.len, @intFromPtr(buf.ptr), buf.len);
            const out = try takeOutput(it.gpa, buf, st);
            it.pages += 1;
            it.left = 0;
            it.more = false;
            it.last_key = null;
            var d = cbor.Decoder.init(out);
            const n = try d.map();
            for (0..n) |_| {
                const k = try d.text();
                if (std.mem.eql(u8, k, "entries")) {
                    it.left = try d.array();
                    it.page = d; // entries are decoded lazily by next()
                    for (0..it.left) |_| try d.skip();
                } else if (std.mem.eql(u8, k, "more")) {
                    it.more = try d.boolean();
                } else {
                    try d.skip();
                }
            }
            if (!d.done()) {
                it.left = 0;
                it.more = false;
                return error.InvalidCbor;
            }
        }

        /// The next entry (slices allocated with the list's allocator), or null at the end.
        pub fn next(it: *List) Error!?Entry {
            while (true) {
                if (it.opts.limit != 0 and it.returned >= it.opts.limit) return null;
                if (it.left > 0) {
                    if (try it.page.array() != 2) return error.InvalidCbor;
                    const entry: Entry = .{ .key = try it.page.bytes(), .value = try it.page.bytes() };
                    it.left -= 1;
                    it.returned += 1;
                    it.last_key = entry.key;
                    return entry;
                }
                // A page without entries cannot be continued (and must not loop forever).
                const last = it.last_key orelse return null;
                if (!it.more) return null;
                if (it.opts.reverse) {
                    it.opts.end = last; // descending: stop before the smallest key seen
                } else {
                    const start = try it.gpa.alloc(u8, last.len + 1); // last ++ 0x00
                    @memcpy(start[0..last.len], last);
                    start[last.len] = 0;
                    it.opts.start = start;
                }
                try it.fetchPage();
            }
        }
    };
};

// ---- Errors --------------------------------------------------------------------------

/// The detail of a failed import (abi/error.cddl).
pub const ErrorDetail = struct {
    code: i32 = 0,
    name: []const u8 = "",
    message: []const u8 = "",
};

/// The detail of the last failed import of this event; `error.NoResult` when none failed.
pub fn lastError(gpa: Allocator) Error!ErrorDetail {
    const buf = try gpa.alloc(u8, scratch_bytes);
    const out = try takeOutput(gpa, buf, raw.last_error(@intFromPtr(buf.ptr), buf.len));
    var d = cbor.Decoder.init(out);
    var detail: ErrorDetail = .{};
    const n = try d.map();
    for (0..n) |_| {
        const k = try d.text();
        if (std.mem.eql(u8, k, "code")) {
            detail.code = std.math.cast(i32, try d.int()) orelse return error.InvalidCbor;
        } else if (std.mem.eql(u8, k, "name")) {
            detail.name = try d.text();
        } else if (std.mem.eql(u8, k, "message")) {
            detail.message = try d.text();
        } else {
            try d.skip();
        }
    }
    if (!d.done()) return error.InvalidCbor;
    return detail;
}

// ---- Utilities -------------------------------------------------------------------------

/// Log levels of the `log` import.
pub const Level = enum(i32) { debug = 0, info = 1, warn = 2, err = 3 };

/// Logging: the text goes to the host log tagged with the object when the event ends;
/// lines above 16 KiB are truncated.
pub const log = struct {
    /// Any level (0..3; another is `error.InvalidArgument`).
    pub fn write(level: i32, text: []const u8) Error!void {
        _ = try check(raw.log(level, addr(text), text.len));
    }
    pub fn debug(text: []const u8) void {
        write(0, text) catch {};
    }
    pub fn info(text: []const u8) void {
        write(1, text) catch {};
    }
    pub fn warn(text: []const u8) void {
        write(2, text) catch {};
    }
    pub fn err(text: []const u8) void {
        write(3, text) catch {};
    }
};

/// The object's one alarm (abi/README.md, "Alarms"): a time in ms since the Unix epoch at
/// which the host calls the served type's `alarm`. Changes are part of the event's
/// transaction; inside the alarm handler `get` reports no alarm unless it set a new one.
pub const alarm = struct {
    /// Sets (replaces) the alarm; a time in the past fires at once; a negative time is
    /// `error.InvalidArgument`.
    pub fn set(time_ms: i64) Error!void {
        _ = try check(raw.alarm_set(time_ms));
    }

    /// Sets the alarm `ms` milliseconds from now.
    pub fn setIn(ms: i64) Error!void {
        return set(nowMs() +| ms);
    }

    /// The alarm's time, or null when none is set.
    pub fn get() Error!?i64 {
        var le: [8]u8 = undefined;
        if (try check(raw.alarm_get(@intFromPtr(&le))) != 1) return null;
        return std.mem.readInt(i64, &le, .little);
    }

    /// Deletes the alarm (no error when none is set).
    pub fn delete() Error!void {
        _ = try check(raw.alarm_delete());
    }
};

/// Wall-clock milliseconds since the Unix epoch.
pub fn nowMs() i64 {
    return raw.now_ms();
}

/// Fills `buf` with cryptographically secure bytes (any length; split into host calls of
/// at most 64 KiB).
pub fn randomFill(buf: []u8) Error!void {
    var rest = buf;
    while (rest.len > 0) {
        const n = @min(rest.len, 65536);
        _ = try check(raw.random_fill(@intFromPtr(rest.ptr), n));
        rest = rest[n..];
    }
}

/// Parses an optional sign and decimal digits, allowing surrounding spaces, tabs, CR and
/// LF; null on anything else, on no digits, or on overflow.
pub fn parseInt(text: []const u8) ?i64 {
    const s = std.mem.trim(u8, text, " \t\r\n");
    if (s.len == 0) return null;
    const neg = s[0] == '-';
    const digits = if (s[0] == '-' or s[0] == '+') s[1..] else s;
    if (digits.len == 0) return null;
    var v: i64 = 0; // accumulated negatively so that minInt(i64) parses
    for (digits) |c| {
        if (c < '0' or c > '9') return null;
        v = std.math.mul(i64, v, 10) catch return null;
        v = std.math.sub(i64, v, c - '0') catch return null;
    }
    if (neg) return v;
    return std.math.negate(v) catch null;
}

/// Room for any i64 in decimal.
pub const int_chars = 20;

/// Formats `v` in decimal into `buf`; returns the digits.
pub fn formatInt(buf: *[int_chars]u8, v: i64) []const u8 {
    var u: u64 = @abs(v);
    var i: usize = buf.len;
    while (true) {
        i -= 1;
        buf[i] = '0' + @as(u8, @intCast(u % 10));
        u /= 10;
        if (u == 0) break;
    }
    if (v < 0) {
        i -= 1;
        buf[i] = '-';
    }
    return buf[i..];
}

// ---- Exports -------------------------------------------------------------------------

/// The alarm that fired (abi/alarm.cddl).
pub const AlarmInfo = struct {
    scheduled_ms: i64 = 0,
    retry_count: u64 = 0,
    is_retry: bool = false,

    fn decode(input: []const u8) Error!AlarmInfo {
        var d = cbor.Decoder.init(input);
        var info: AlarmInfo = .{};
        const n = try d.map();
        for (0..n) |_| {
            const k = try d.text();
            if (std.mem.eql(u8, k, "scheduled_ms")) {
                info.scheduled_ms = try d.int();
            } else if (std.mem.eql(u8, k, "retry_count")) {
                info.retry_count = try d.uint();
            } else if (std.mem.eql(u8, k, "is_retry")) {
                info.is_retry = try d.boolean();
            } else {
                try d.skip();
            }
        }
        if (!d.done()) return error.InvalidCbor;
        return info;
    }
};

fn readInput(len: i32) Error![]u8 {
    const a = arena();
    const buf = try a.alloc(u8, @intCast(@max(len, 0)));
    return takeOutput(a, buf, raw.input_read(addr(buf), buf.len));
}

var fail_code: i32 = 1;

/// Fails the event with `code` (non-zero) as the export's return value, without logging:
/// `return dohost.failEvent(7);` in a handler. Any other error fails it too, with its
/// status (see `statusOf`) and a log line.
pub fn failEvent(code: i32) error{EventFailed} {
    fail_code = if (code == 0) 1 else code;
    return error.EventFailed;
}

/// Logs "dohost: <what> failed: error.<name>" and returns the export's failure status.
fn failed(what: []const u8, err: anyerror) i32 {
    if (err == error.EventFailed) return fail_code;
    var line: [160]u8 = undefined;
    var n: usize = 0;
    for ([_][]const u8{ "dohost: ", what, " failed: error.", @errorName(err) }) |part| {
        const m = @min(part.len, line.len - n);
        @memcpy(line[n..][0..m], part[0..m]);
        n += m;
    }
    log.err(line[0..n]);
    const st = statusOf(err);
    return if (st == 0) -1 else st;
}

fn sendReturned(result: anytype) Error!void {
    const T = @TypeOf(result);
    if (T == Response) return respond(result);
    if (T == ?Response) {
        if (result) |r| return respond(r);
        return;
    }
    if (T == void) return;
    @compileError("fetch must return !dohost.Response, !?dohost.Response or !void");
}

/// Exports the ABI marker and `dohost_fetch` wired to `App.fetch`, plus `dohost_init` and
/// `dohost_alarm` when `App` declares `init` / `alarm`. Call it in a `comptime` block.
pub fn serve(comptime App: type) void {
    const W = struct {
        fn marker() callconv(.c) void {}

        fn fetch(request_len: i32) callconv(.c) i32 {
            beginEvent();
            const input = readInput(request_len) catch |e| return failed("reading the request", e);
            const req = Request.decode(arena(), input) catch |e| return failed("decoding the request", e);
            const result = App.fetch(&req) catch |e| return failed("fetch", e);
            sendReturned(result) catch |e| return failed("response_set", e);
            return 0;
        }

        fn init() callconv(.c) i32 {
            beginEvent();
            App.init(arena()) catch |e| return failed("init", e);
            return 0;
        }

        fn alarm(info_len: i32) callconv(.c) i32 {
            beginEvent();
            const input = readInput(info_len) catch |e| return failed("reading the alarm info", e);
            const info = AlarmInfo.decode(input) catch |e| return failed("decoding the alarm info", e);
            App.alarm(arena(), info) catch |e| return failed("alarm", e);
            return 0;
        }
    };
    @export(&W.marker, .{ .name = "dohost_abi_v1" });
    @export(&W.fetch, .{ .name = "dohost_fetch" });
    if (@hasDecl(App, "init")) @export(&W.init, .{ .name = "dohost_init" });
    if (@hasDecl(App, "alarm")) @export(&W.alarm, .{ .name = "dohost_alarm" });
    websocket.serve(App); // dohost_ws_* for the webSocket* handlers App declares
}

/// The event plumbing, for the SDK's other files (websocket.zig); not part of the API.
pub const internal = struct {
    pub const begin_event = beginEvent;
    pub const read_input = readInput;
    pub const take_output = takeOutput;
    pub const fail = failed;
};
