//! SQL for classes deployed with storage="sqlite" (abi/README.md, section 5 "SQL";
//! abi/sql.cddl): `dohost.sql`.
//!
//!     const res = try dohost.sql.exec(req.arena,
//!         "SELECT name, party FROM bookings WHERE table_no = ? AND slot = ?",
//!         &.{ .{ .int = 3 }, .{ .text = "2026-12-24T19:00" } });
//!     var rows = res.rows();
//!     while (try rows.next()) |row| {
//!         const name = row[0].text;   // []const u8 (UTF-8), in the allocator you passed
//!         const party = row[1].int;
//!     }
//!
//! One call runs one statement with bound parameters inside the event's transaction: it
//! sees the event's own KV and SQL writes and commits (or rolls back) with them. Errors:
//! `error.SqlError` (SQLite rejected the statement: syntax, a constraint; it undid itself
//! and the event may go on), `error.SqlRefused` (something guests may not do: BEGIN,
//! ATTACH, most pragmas, the host's `_dohost_*` tables...), `error.NotSupported` (the
//! class uses the kv backend), `error.InvalidArgument` (text above 100,000 bytes, more
//! than 100 parameters, a count that does not match the placeholders),
//! `error.LimitExceeded`, `error.QuotaExceeded`. `dohost.lastError(arena)` has the host's
//! message (SQLite's own for `SqlError`).

const std = @import("std");
const dohost = @import("dohost.zig");
const cbor = dohost.cbor;

const Allocator = std.mem.Allocator;
const Error = dohost.Error;

/// The raw import (abi/README.md section 5): `params` is an sql-params CBOR array (0
/// length: none); returns the length of an sql-result under the output-buffer rule.
pub const raw = struct {
    pub extern "dohost" fn sql_exec(sql: usize, sql_len: usize, params: usize, params_len: usize, out: usize, cap: usize) i32;
};

/// One parameter or result value: SQLite's storage classes. A float NaN is stored as null.
pub const Value = union(enum) {
    null,
    int: i64,
    float: f64,
    /// UTF-8
    text: []const u8,
    blob: []const u8,

    fn encode(e: *cbor.Encoder, v: Value) void {
        switch (v) {
            .null => e.null_(),
            .int => |i| e.int(i),
            .float => |f| e.float(f),
            .text => |t| e.text(t),
            .blob => |b| e.bytes(b),
        }
    }

    fn decode(d: *cbor.Decoder) Error!Value {
        return switch (d.peek()) {
            .uint, .nint => .{ .int = try d.int() },
            .float => .{ .float = try d.float() },
            .text => .{ .text = try d.text() },
            .bytes => .{ .blob = try d.bytes() },
            .null_ => blk: {
                try d.null_();
                break :blk .null;
            },
            else => error.InvalidCbor,
        };
    }
};

fn encodeParams(e: *cbor.Encoder, params: []const Value) void {
    e.array(params.len);
    for (params) |p| Value.encode(e, p);
}

/// The result of one statement. Column names and text/blob values are slices of the
/// result's bytes, allocated with the allocator passed to `exec`.
pub const Result = struct {
    /// The result columns' names (empty for a statement that returns none).
    columns: []const []const u8 = &.{},
    /// How many rows `rows()` yields.
    row_count: usize = 0,
    /// What the host metered: rows returned, or SQLite's full-scan steps when more.
    rows_read: u64 = 0,
    /// Rows inserted, updated or deleted (triggers' included).
    rows_written: u64 = 0,
    gpa: Allocator,
    first_row: cbor.Decoder = cbor.Decoder.init(""),

    /// The rows, decoded one at a time as you iterate (each call starts from the first).
    pub fn rows(r: *const Result) Rows {
        return .{ .d = r.first_row, .left = r.row_count, .gpa = r.gpa, .width = r.columns.len };
    }

    /// The index of the column with this name.
    pub fn column(r: *const Result, name: []const u8) ?usize {
        for (r.columns, 0..) |c, i| {
            if (std.mem.eql(u8, c, name)) return i;
        }
        return null;
    }
};

/// Iterates a result's rows: `while (try rows.next()) |row| ...`.
pub const Rows = struct {
    d: cbor.Decoder,
    left: usize,
    gpa: Allocator,
    width: usize,

    /// The next row (one value per column, a new slice each time), or null after the last.
    pub fn next(it: *Rows) Error!?[]Value {
        if (it.left == 0) return null;
        const n = try it.d.array();
        if (n != it.width) return error.InvalidCbor;
        const row = try it.gpa.alloc(Value, n);
        for (row) |*v| v.* = try Value.decode(&it.d);
        it.left -= 1;
        return row;
    }
};

/// Runs one statement with `params` bound to its placeholders (?, ?NNN, :name, @name,
/// $name in order of appearance). Bind values; never splice them into the text.
pub fn exec(gpa: Allocator, statement: []const u8, params: []const Value) Error!Result {
    const input = if (params.len == 0) try gpa.alloc(u8, 0) else try dohost.encodeAlloc(gpa, encodeParams, params);
    defer gpa.free(input);
    const buf = try gpa.alloc(u8, dohost.scratch_bytes);
    const st = raw.sql_exec(dohost.addr(statement), statement.len, dohost.addr(input), input.len, @intFromPtr(buf.ptr), buf.len);
    const out = try dohost.takeOutput(gpa, buf, st);
    return decodeResult(gpa, out);
}

fn decodeResult(gpa: Allocator, out: []const u8) Error!Result {
    var d = cbor.Decoder.init(out);
    var r: Result = .{ .gpa = gpa };
    const n = try d.map();
    for (0..n) |_| {
        const k = try d.text();
        if (std.mem.eql(u8, k, "columns")) {
            const cols = try gpa.alloc([]const u8, try d.array());
            for (cols) |*c| c.* = try d.text();
            r.columns = cols;
        } else if (std.mem.eql(u8, k, "rows")) {
            r.row_count = try d.array();
            r.first_row = d; // rows are decoded lazily by Rows.next
            for (0..r.row_count) |_| try d.skip();
        } else if (std.mem.eql(u8, k, "rows_read")) {
            r.rows_read = try d.uint();
        } else if (std.mem.eql(u8, k, "rows_written")) {
            r.rows_written = try d.uint();
        } else {
            try d.skip(); // sql.cddl may grow
        }
    }
    if (!d.done()) return error.InvalidCbor;
    return r;
}
