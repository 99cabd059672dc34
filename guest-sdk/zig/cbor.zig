//! A tiny CBOR (RFC 8949) encoder and decoder for dohost guests.
//!
//! Covers what the dohost ABI uses: unsigned and negative integers, byte and text
//! strings, arrays, maps, booleans, null and floats (SQL values: the encoder writes
//! doubles, the decoder reads half, single and double precision), all with definite
//! lengths. The decoder also skips tags (so unknown map values can be ignored) but never
//! returns them; indefinite lengths are rejected.
//!
//! No allocation: the encoder writes into a slice you give it and counts every byte, so a
//! first pass over an empty slice measures the exact size for a second pass; the decoder
//! returns slices of its input.

const std = @import("std");

pub const Error = error{InvalidCbor};

const UINT = 0;
const NINT = 1;
const BSTR = 2;
const TSTR = 3;
const ARRAY = 4;
const MAP = 5;
const TAG = 6;
const SIMPLE = 7;
const FALSE = 20;
const TRUE = 21;
const NULL = 22;

/// Writes at most `buf.len` bytes but counts all of them in `len`.
pub const Encoder = struct {
    buf: []u8,
    len: usize = 0,

    pub fn init(buf: []u8) Encoder {
        return .{ .buf = buf };
    }

    /// A measuring encoder: writes nothing, counts everything.
    pub fn measure() Encoder {
        return .{ .buf = &.{} };
    }

    /// True when everything produced so far fitted.
    pub fn ok(e: *const Encoder) bool {
        return e.len <= e.buf.len;
    }

    /// The bytes written (valid when `ok`).
    pub fn written(e: *const Encoder) []u8 {
        return e.buf[0..@min(e.len, e.buf.len)];
    }

    fn put(e: *Encoder, data: []const u8) void {
        if (e.len <= e.buf.len and data.len <= e.buf.len - e.len)
            @memcpy(e.buf[e.len..][0..data.len], data);
        e.len += data.len;
    }

    /// The initial byte plus the big-endian argument in the shortest form.
    noinline fn head(e: *Encoder, major: u8, arg: u64) void {
        var h: [9]u8 = undefined;
        const m: u8 = major << 5;
        if (arg < 24) {
            h[0] = m | @as(u8, @intCast(arg));
            return e.put(h[0..1]);
        }
        const n: usize = if (arg <= 0xff) 1 else if (arg <= 0xffff) 2 else if (arg <= 0xffff_ffff) 4 else 8;
        h[0] = m | @as(u8, switch (n) {
            1 => 24,
            2 => 25,
            4 => 26,
            else => 27,
        });
        var i: usize = 0;
        while (i < n) : (i += 1) h[n - i] = @truncate(arg >> @intCast(8 * i));
        e.put(h[0 .. n + 1]);
    }

    pub fn uint(e: *Encoder, v: u64) void {
        e.head(UINT, v);
    }
    pub fn int(e: *Encoder, v: i64) void {
        if (v >= 0) e.head(UINT, @intCast(v)) else e.head(NINT, ~@as(u64, @bitCast(v)));
    }
    pub fn bytes(e: *Encoder, b: []const u8) void {
        e.head(BSTR, b.len);
        e.put(b);
    }
    pub fn text(e: *Encoder, s: []const u8) void {
        e.head(TSTR, s.len);
        e.put(s);
    }
    /// Then `count` items.
    pub fn array(e: *Encoder, count: usize) void {
        e.head(ARRAY, count);
    }
    /// Then `count` key/value pairs.
    pub fn map(e: *Encoder, count: usize) void {
        e.head(MAP, count);
    }
    pub fn boolean(e: *Encoder, v: bool) void {
        e.head(SIMPLE, if (v) TRUE else FALSE);
    }
    pub fn null_(e: *Encoder) void {
        e.head(SIMPLE, NULL);
    }
    /// Always 8 bytes (a double): the host reads every precision, and SQLite stores doubles.
    pub fn float(e: *Encoder, v: f64) void {
        var h: [9]u8 = undefined;
        h[0] = SIMPLE << 5 | 27;
        std.mem.writeInt(u64, h[1..9], @bitCast(v), .big);
        e.put(&h);
    }
};

pub const Type = enum { end, uint, nint, bytes, text, array, map, tag, boolean, null_, float, other };

/// Reads items from `data`; strings are slices of it.
pub const Decoder = struct {
    data: []const u8,
    pos: usize = 0,

    pub fn init(data: []const u8) Decoder {
        return .{ .data = data };
    }

    /// True when every byte was consumed.
    pub fn done(d: *const Decoder) bool {
        return d.pos == d.data.len;
    }

    fn remaining(d: *const Decoder) usize {
        return d.data.len - d.pos;
    }

    pub fn peek(d: *const Decoder) Type {
        if (d.pos >= d.data.len) return .end;
        const b = d.data[d.pos];
        return switch (b >> 5) {
            UINT => .uint,
            NINT => .nint,
            BSTR => .bytes,
            TSTR => .text,
            ARRAY => .array,
            MAP => .map,
            TAG => .tag,
            else => switch (b & 31) {
                FALSE, TRUE => .boolean,
                NULL => .null_,
                25, 26, 27 => .float,
                else => .other,
            },
        };
    }

    const Head = struct { major: u8, arg: u64 };

    noinline fn head(d: *Decoder) Error!Head {
        if (d.pos >= d.data.len) return error.InvalidCbor;
        const b = d.data[d.pos];
        d.pos += 1;
        const ai = b & 31;
        if (ai < 24) return .{ .major = b >> 5, .arg = ai };
        if (ai > 27) return error.InvalidCbor; // reserved, or indefinite length
        const n = @as(usize, 1) << @intCast(ai - 24);
        if (d.remaining() < n) return error.InvalidCbor;
        var v: u64 = 0;
        for (d.data[d.pos..][0..n]) |byte| v = v << 8 | byte;
        d.pos += n;
        return .{ .major = b >> 5, .arg = v };
    }

    fn expect(d: *Decoder, major: u8) Error!u64 {
        const h = try d.head();
        if (h.major != major) return error.InvalidCbor;
        return h.arg;
    }

    pub fn uint(d: *Decoder) Error!u64 {
        return d.expect(UINT);
    }

    /// An unsigned or negative integer that fits in an i64.
    pub fn int(d: *Decoder) Error!i64 {
        const h = try d.head();
        if (h.arg > std.math.maxInt(i64)) return error.InvalidCbor;
        const v: i64 = @intCast(h.arg);
        return switch (h.major) {
            UINT => v,
            NINT => -1 - v,
            else => error.InvalidCbor,
        };
    }

    fn string(d: *Decoder, major: u8) Error![]const u8 {
        const len = try d.expect(major);
        if (len > d.remaining()) return error.InvalidCbor;
        const s = d.data[d.pos..][0..@intCast(len)];
        d.pos += @intCast(len);
        return s;
    }

    pub fn bytes(d: *Decoder) Error![]const u8 {
        return d.string(BSTR);
    }

    /// A text string (not checked for valid UTF-8).
    pub fn text(d: *Decoder) Error![]const u8 {
        return d.string(TSTR);
    }

    fn count(d: *Decoder, major: u8, min_bytes: usize) Error!usize {
        const n = try d.expect(major);
        if (n > d.remaining() / min_bytes) return error.InvalidCbor;
        return @intCast(n);
    }

    /// The number of items of an array (read them next).
    pub fn array(d: *Decoder) Error!usize {
        return d.count(ARRAY, 1);
    }

    /// The number of key/value pairs of a map (read them next).
    pub fn map(d: *Decoder) Error!usize {
        return d.count(MAP, 2);
    }

    pub fn boolean(d: *Decoder) Error!bool {
        return switch (try d.expect(SIMPLE)) {
            FALSE => false,
            TRUE => true,
            else => error.InvalidCbor,
        };
    }

    pub fn null_(d: *Decoder) Error!void {
        if (try d.expect(SIMPLE) != NULL) return error.InvalidCbor;
    }

    /// A half, single or double precision float, as a double.
    pub fn float(d: *Decoder) Error!f64 {
        if (d.peek() != .float) return error.InvalidCbor;
        const ai = d.data[d.pos] & 31;
        const bits = try d.expect(SIMPLE);
        return switch (ai) {
            25 => @floatCast(@as(f16, @bitCast(@as(u16, @intCast(bits))))),
            26 => @floatCast(@as(f32, @bitCast(@as(u32, @intCast(bits))))),
            else => @bitCast(bits),
        };
    }

    /// Skips one complete item, nested ones included, without recursion.
    pub fn skip(d: *Decoder) Error!void {
        var pending: u64 = 1;
        while (pending > 0) {
            const h = try d.head();
            pending -= 1;
            switch (h.major) {
                BSTR, TSTR => {
                    if (h.arg > d.remaining()) return error.InvalidCbor;
                    d.pos += @intCast(h.arg);
                },
                ARRAY, MAP => {
                    if (h.arg > d.remaining()) return error.InvalidCbor;
                    pending += if (h.major == MAP) 2 * h.arg else h.arg;
                },
                TAG => pending += 1,
                else => {},
            }
        }
    }
};
