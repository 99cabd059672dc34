// A tiny CBOR (RFC 8949) encoder and decoder for dohost guests.
//
// Covers what the dohost ABI uses: unsigned and negative integers, byte and text strings,
// arrays, maps, booleans, null and floats (SQL values: the encoder writes doubles, the
// decoder reads half, single and double precision), all with definite lengths. The
// decoder also skips tags (so unknown map values can be ignored) but never returns them;
// indefinite lengths are rejected. Decoding errors are sticky: after the first problem `ok` is false
// and every later read returns a zero value, so a caller checks once at the end.

const UINT: u32 = 0;
const NINT: u32 = 1;
const BSTR: u32 = 2;
const TSTR: u32 = 3;
const ARRAY: u32 = 4;
const MAP: u32 = 5;
const TAG: u32 = 6;
const SIMPLE: u32 = 7;
const FALSE: u64 = 20;
const TRUE: u64 = 21;
const NULL: u64 = 22;

/** Writes CBOR items into a growable buffer; `finish()` returns the bytes. */
export class Encoder {
  private buf: Uint8Array;
  private len: i32 = 0;

  /** `capacity`: the expected size (a response encoder reserves its body up front). */
  constructor(capacity: i32 = 64) {
    this.buf = new Uint8Array(capacity > 0 ? capacity : 64);
  }

  private reserve(n: i32): usize {
    if (this.len + n > this.buf.length) {
      let cap = this.buf.length * 2;
      if (cap < this.len + n) cap = this.len + n;
      const grown = new Uint8Array(cap);
      memory.copy(grown.dataStart, this.buf.dataStart, <usize>this.len);
      this.buf = grown;
    }
    const at = this.buf.dataStart + <usize>this.len;
    this.len += n;
    return at;
  }

  private head(major: u32, arg: u64): void {
    const m = <u8>(major << 5);
    if (arg < 24) {
      store<u8>(this.reserve(1), m | <u8>arg);
      return;
    }
    let n = 8;
    let ai: u8 = 27;
    if (arg <= 0xff) {
      n = 1;
      ai = 24;
    } else if (arg <= 0xffff) {
      n = 2;
      ai = 25;
    } else if (arg <= 0xffffffff) {
      n = 4;
      ai = 26;
    }
    const p = this.reserve(1 + n);
    store<u8>(p, m | ai);
    for (let i = 0; i < n; i++) store<u8>(p + <usize>(n - i), <u8>(arg >> (8 * <u64>i)));
  }

  uint(v: u64): Encoder {
    this.head(UINT, v);
    return this;
  }

  int(v: i64): Encoder {
    if (v >= 0) this.head(UINT, <u64>v);
    else this.head(NINT, ~(<u64>v)); // -1 - v without overflow
    return this;
  }

  bytes(b: Uint8Array): Encoder {
    this.head(BSTR, <u64>b.length);
    memory.copy(this.reserve(b.length), b.dataStart, <usize>b.length);
    return this;
  }

  /** A text string from raw UTF-8 bytes. */
  textBytes(b: Uint8Array): Encoder {
    this.head(TSTR, <u64>b.length);
    memory.copy(this.reserve(b.length), b.dataStart, <usize>b.length);
    return this;
  }

  text(s: string): Encoder {
    const n = String.UTF8.byteLength(s);
    this.head(TSTR, <u64>n);
    String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, this.reserve(n));
    return this;
  }

  /** Starts an array of `count` items (write them next). */
  array(count: i32): Encoder {
    this.head(ARRAY, <u64>count);
    return this;
  }

  /** Starts a map of `count` key/value pairs (write them next). */
  map(count: i32): Encoder {
    this.head(MAP, <u64>count);
    return this;
  }

  bool(v: bool): Encoder {
    this.head(SIMPLE, v ? TRUE : FALSE);
    return this;
  }

  null(): Encoder {
    this.head(SIMPLE, NULL);
    return this;
  }

  /** Always 8 bytes (a double): the host reads every precision, and SQLite stores doubles. */
  float(v: f64): Encoder {
    const p = this.reserve(9);
    store<u8>(p, <u8>((SIMPLE << 5) | 27));
    store<u64>(p + 1, bswap<u64>(reinterpret<u64>(v)));
    return this;
  }

  get length(): i32 {
    return this.len;
  }

  /** Address of the bytes written so far (valid until the next write). */
  get dataStart(): usize {
    return this.buf.dataStart;
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

/** What the next item is, without consuming it. */
export enum CborType { End, UInt, NInt, Bytes, Text, Array, Map, Tag, Bool, Null, Other, Float }

/** Reads items from `src`; `bytes()` and `text()` copy out of it. */
export class Decoder {
  private src: Uint8Array; // kept referenced so the collector leaves it alone
  private pos: usize;
  private end: usize;
  /** False after the first malformed, truncated or unexpected item. */
  ok: bool = true;

  constructor(src: Uint8Array) {
    this.src = src;
    this.pos = src.dataStart;
    this.end = src.dataStart + <usize>src.length;
  }

  /** True when no error happened and every byte was consumed. */
  get done(): bool {
    return this.ok && this.pos == this.end;
  }

  private fail(): void {
    this.ok = false;
    this.pos = this.end;
  }

  private get remaining(): u64 {
    return <u64>(this.end - this.pos);
  }

  peek(): CborType {
    if (!this.ok || this.pos >= this.end) return CborType.End;
    const b = <u32>load<u8>(this.pos);
    switch (b >> 5) {
      case UINT: return CborType.UInt;
      case NINT: return CborType.NInt;
      case BSTR: return CborType.Bytes;
      case TSTR: return CborType.Text;
      case ARRAY: return CborType.Array;
      case MAP: return CborType.Map;
      case TAG: return CborType.Tag;
    }
    const ai = <u64>(b & 31);
    if (ai == FALSE || ai == TRUE) return CborType.Bool;
    if (ai >= 25 && ai <= 27) return CborType.Float;
    return ai == NULL ? CborType.Null : CborType.Other;
  }

  // The head's major type, or 8 on error; its argument in `arg`.
  private arg: u64 = 0;

  private head(): u32 {
    if (!this.ok || this.pos >= this.end) {
      this.fail();
      return 8;
    }
    const b = <u32>load<u8>(this.pos++);
    const ai = b & 31;
    if (ai < 24) {
      this.arg = <u64>ai;
      return b >> 5;
    }
    if (ai > 27) { // reserved, or an indefinite length
      this.fail();
      return 8;
    }
    const n = <usize>1 << <usize>(ai - 24);
    if (<usize>this.remaining < n) {
      this.fail();
      return 8;
    }
    let v: u64 = 0;
    for (let i: usize = 0; i < n; i++) v = (v << 8) | <u64>load<u8>(this.pos + i);
    this.pos += n;
    this.arg = v;
    return b >> 5;
  }

  private expect(major: u32): u64 {
    if (this.head() != major) {
      this.fail();
      return 0;
    }
    return this.arg;
  }

  uint(): u64 {
    return this.expect(UINT);
  }

  /** An unsigned or negative integer that fits in an i64. */
  int(): i64 {
    const major = this.head();
    if ((major != UINT && major != NINT) || this.arg > <u64>i64.MAX_VALUE) {
      this.fail();
      return 0;
    }
    return major == UINT ? <i64>this.arg : -1 - <i64>this.arg;
  }

  // A string's position and length: string bytes stay in the input.
  private strLen: usize = 0;

  private string(major: u32): usize {
    const len = this.expect(major);
    if (!this.ok || len > this.remaining) {
      this.fail();
      this.strLen = 0;
      return 0;
    }
    const at = this.pos;
    this.pos += <usize>len;
    this.strLen = <usize>len;
    return at;
  }

  /** A byte string, copied out. */
  bytes(): Uint8Array {
    const at = this.string(BSTR);
    const out = new Uint8Array(<i32>this.strLen);
    memory.copy(out.dataStart, at, this.strLen);
    return out;
  }

  /** A byte string as a view of the input (no copy; it keeps the whole input alive). */
  bytesView(): Uint8Array {
    const at = this.string(BSTR);
    const start = <i32>(at - this.src.dataStart);
    return this.ok ? this.src.subarray(start, start + <i32>this.strLen) : new Uint8Array(0);
  }

  /** A text string. */
  text(): string {
    const at = this.string(TSTR);
    return String.UTF8.decodeUnsafe(at, this.strLen);
  }

  /** A text string's raw UTF-8 bytes, copied out. */
  textBytes(): Uint8Array {
    const at = this.string(TSTR);
    const out = new Uint8Array(<i32>this.strLen);
    memory.copy(out.dataStart, at, this.strLen);
    return out;
  }

  // The last map key read by readKey().
  private keyPtr: usize = 0;
  private keyLen: usize = 0;

  /** Reads a map key (a text string) to compare with `is()`. */
  readKey(): void {
    this.keyPtr = this.string(TSTR);
    this.keyLen = this.strLen;
  }

  /** True when the key read by `readKey()` equals the ASCII text `s`. */
  is(s: string): bool {
    if (!this.ok || <usize>s.length != this.keyLen) return false;
    for (let i: usize = 0; i < this.keyLen; i++) {
      if (<u32>load<u8>(this.keyPtr + i) != <u32>s.charCodeAt(<i32>i)) return false;
    }
    return true;
  }

  private count(major: u32, minBytes: u64): i32 {
    const n = this.expect(major);
    if (!this.ok || n > this.remaining / minBytes) {
      this.fail();
      return 0;
    }
    return <i32>n;
  }

  /** The number of items of an array (read them next). */
  array(): i32 {
    return this.count(ARRAY, 1);
  }

  /** The number of key/value pairs of a map (read them next). */
  map(): i32 {
    return this.count(MAP, 2);
  }

  bool(): bool {
    const v = this.expect(SIMPLE);
    if (v != FALSE && v != TRUE) this.fail();
    return v == TRUE;
  }

  null(): void {
    if (this.expect(SIMPLE) != NULL) this.fail();
  }

  /** A half, single or double precision float, as an f64. */
  float(): f64 {
    if (this.peek() != CborType.Float) {
      this.fail();
      return 0;
    }
    const ai = <u32>load<u8>(this.pos) & 31;
    const bits = this.expect(SIMPLE);
    if (ai == 27) return reinterpret<f64>(bits);
    if (ai == 26) return <f64>reinterpret<f32>(<u32>bits);
    return halfToF64(<u32>bits);
  }

  /** Skips one complete item, nested ones included, without recursion. */
  skip(): void {
    let pending: u64 = 1;
    while (pending > 0 && this.ok) {
      const major = this.head();
      pending--;
      if (major == BSTR || major == TSTR) {
        if (this.arg > this.remaining) this.fail();
        else this.pos += <usize>this.arg;
      } else if (major == ARRAY || major == MAP) {
        if (this.arg > this.remaining) this.fail();
        else pending += major == MAP ? 2 * this.arg : this.arg;
      } else if (major == TAG) {
        pending += 1;
      } else if (major == 8) {
        this.fail();
      }
    }
  }
}

/** IEEE-754 half precision to f64. */
function halfToF64(h: u32): f64 {
  const sign: f64 = (h & 0x8000) != 0 ? -1.0 : 1.0;
  const exp = <i32>((h >> 10) & 0x1f);
  const frac = <f64>(h & 0x3ff);
  if (exp == 0) return sign * frac * Math.pow(2, -24);
  if (exp == 31) return frac == 0 ? sign * Infinity : NaN;
  return sign * (1.0 + frac / 1024.0) * Math.pow(2, <f64>(exp - 15));
}
