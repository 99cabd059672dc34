//! Calls to other objects (abi/README.md, section 5 "Object calls"; abi/call.cddl):
//! `dohost.calls`.
//!
//!     const resp = try dohost.calls.byName(req.arena, "pipeline", "build-main", .{
//!         .method = "POST", .path = "/runs/7/finished", .body = "{}",
//!     });
//!     if (resp.status >= 500) ... // the callee failed: resp.body is a JSON error
//!
//! A call sends a fetch-shaped request to another object of the same tenant (any of its
//! classes, by name or by id) and returns that object's response. What to know:
//! - A call is a commit point: the event's writes so far are committed, and durable,
//!   before the call leaves; writes after it form a new transaction.
//! - The callee runs its own event with its own limits. If it traps or runs out of CPU
//!   time the call still succeeds: a 500 response with the JSON body
//!   {"error": {"code": "object_error" | "cpu_limit", "message": ...}}.
//! - Errors are calls that could not be made: `error.CallCycle` (the target is already
//!   waiting in this call chain, e.g. A -> B -> A or A calling itself; the message names
//!   the chain), `error.CallDepth` (more than 16 calls deep), `error.CallFailed` (no such
//!   class in this tenant, an id of another class or a forged one, the host shutting
//!   down), `error.BadEncoding` (a path not beginning with "/", an invalid header).
//!   `dohost.lastError(arena)` has the host's message.
//! - A callee learns who called from headers only the host sets: `caller(req)`.
//!   `objectInfo` gives an object its own address, e.g. to pass on for a callback.

const std = @import("std");
const dohost = @import("dohost.zig");
const cbor = dohost.cbor;

const Allocator = std.mem.Allocator;
const Error = dohost.Error;
const Header = dohost.Header;

/// The raw imports (abi/README.md section 5). `call` returns the length of the callee's
/// response (abi/response.cddl), `object_info` that of an object-info (abi/call.cddl),
/// both under the output-buffer rule.
pub const raw = struct {
    pub extern "dohost" fn call(target: usize, target_len: usize, req: usize, req_len: usize, out: usize, cap: usize) i32;
    pub extern "dohost" fn object_info(out: usize, cap: usize) i32;
};

/// The request to send (abi/request.cddl). Header names reach the callee in lower case.
pub const Request = struct {
    method: []const u8 = "GET",
    /// Must begin with "/".
    path: []const u8 = "/",
    /// Without the "?".
    query: []const u8 = "",
    headers: []const Header = &.{},
    body: []const u8 = "",

    fn encode(e: *cbor.Encoder, r: *const Request) void {
        e.map(5);
        e.text("method");
        e.text(r.method);
        e.text("path");
        e.text(r.path);
        e.text("query");
        e.text(r.query);
        e.text("headers");
        e.array(r.headers.len);
        for (r.headers) |h| {
            e.array(2);
            e.text(h.name);
            e.text(h.value);
        }
        e.text("body");
        e.bytes(r.body);
    }
};

/// The callee's response. Slices of the allocator passed to the call.
pub const Response = struct {
    status: u16 = 200,
    /// As the callee set them (hop-by-hop headers dropped); repeated names kept.
    headers: []const Header = &.{},
    body: []const u8 = "",

    /// The first header with this name (case-insensitive).
    pub fn header(r: *const Response, name: []const u8) ?[]const u8 {
        for (r.headers) |h| {
            if (std.ascii.eqlIgnoreCase(h.name, name)) return h.value;
        }
        return null;
    }

    fn decode(gpa: Allocator, input: []const u8) Error!Response {
        var d = cbor.Decoder.init(input);
        var r: Response = .{};
        const n = try d.map();
        for (0..n) |_| {
            const k = try d.text();
            if (std.mem.eql(u8, k, "status")) {
                r.status = std.math.cast(u16, try d.uint()) orelse return error.InvalidCbor;
            } else if (std.mem.eql(u8, k, "headers")) {
                const hs = try gpa.alloc(Header, try d.array());
                for (hs) |*h| {
                    if (try d.array() != 2) return error.InvalidCbor;
                    h.* = .{ .name = try d.text(), .value = try d.text() };
                }
                r.headers = hs;
            } else if (std.mem.eql(u8, k, "body")) {
                r.body = try d.bytes();
            } else {
                try d.skip(); // response.cddl may grow
            }
        }
        if (!d.done()) return error.InvalidCbor;
        return r;
    }
};

/// How a call names its target: by name (UTF-8, up to 1 KiB) or by id (64 hex characters).
pub const Target = struct {
    class: []const u8,
    key: enum { name, id },
    value: []const u8,

    fn encode(e: *cbor.Encoder, t: *const Target) void {
        e.map(2);
        e.text("class");
        e.text(t.class);
        e.text(@tagName(t.key));
        e.text(t.value);
    }
};

/// Calls `target` with `req`; the callee's response, whatever its status.
pub fn call(gpa: Allocator, target: Target, req: Request) Error!Response {
    const t = try dohost.encodeAlloc(gpa, Target.encode, &target);
    defer gpa.free(t);
    const r = try dohost.encodeAlloc(gpa, Request.encode, &req);
    defer gpa.free(r);
    const buf = try gpa.alloc(u8, dohost.scratch_bytes);
    const st = raw.call(dohost.addr(t), t.len, dohost.addr(r), r.len, @intFromPtr(buf.ptr), buf.len);
    return Response.decode(gpa, try dohost.takeOutput(gpa, buf, st));
}

/// Calls the object named `name` of class `class` (of this tenant).
pub fn byName(gpa: Allocator, class: []const u8, name: []const u8, req: Request) Error!Response {
    return call(gpa, .{ .class = class, .key = .name, .value = name }, req);
}

/// Calls the object with this id (64 hex characters, as the host prints it) of `class`.
pub fn byId(gpa: Allocator, class: []const u8, id: []const u8, req: Request) Error!Response {
    return call(gpa, .{ .class = class, .key = .id, .value = id }, req);
}

/// An object's address.
pub const ObjectRef = struct {
    class: []const u8 = "",
    /// 64 hex characters.
    id: []const u8 = "",
    /// null when the host does not know it (the object was addressed by id).
    name: ?[]const u8 = null,
};

/// This object's own class, id and (when known) name.
pub fn objectInfo(gpa: Allocator) Error!ObjectRef {
    const buf = try gpa.alloc(u8, dohost.scratch_bytes);
    const out = try dohost.takeOutput(gpa, buf, raw.object_info(@intFromPtr(buf.ptr), buf.len));
    var d = cbor.Decoder.init(out);
    var ref: ObjectRef = .{};
    const n = try d.map();
    for (0..n) |_| {
        const k = try d.text();
        if (std.mem.eql(u8, k, "class")) {
            ref.class = try d.text();
        } else if (std.mem.eql(u8, k, "id")) {
            ref.id = try d.text();
        } else if (std.mem.eql(u8, k, "name")) {
            ref.name = try d.text();
        } else {
            try d.skip();
        }
    }
    if (!d.done()) return error.InvalidCbor;
    return ref;
}

/// Who called, when this fetch event is a call: from the headers dohost-caller-class,
/// -id and -name, which only the host sets. null for a request that is not a call.
pub fn caller(req: *const dohost.Request) ?ObjectRef {
    const class = req.header("dohost-caller-class") orelse return null;
    const id = req.header("dohost-caller-id") orelse return null;
    return .{ .class = class, .id = id, .name = req.header("dohost-caller-name") };
}
