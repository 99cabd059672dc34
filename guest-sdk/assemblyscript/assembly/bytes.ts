// Small helpers for bytes and text (keys and values are Uint8Array).

/** The UTF-8 bytes of a string. */
export function utf8(s: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(s));
}

/** Bytes as UTF-8 text (invalid sequences replaced). */
export function str(b: Uint8Array): string {
  return String.UTF8.decodeUnsafe(b.dataStart, <usize>b.length);
}

/** Byte-wise equality. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): bool {
  if (a.length != b.length) return false;
  return memory.compare(a.dataStart, b.dataStart, <usize>a.length) == 0;
}

/** a followed by b. */
export function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function isSpace(c: u32): bool {
  return c == 32 || c == 9 || c == 13 || c == 10;
}

/** The integer in `text`: an optional sign and decimal digits, surrounding spaces, tabs,
 *  CR and LF allowed. Returns false (and leaves `parsed` alone) on anything else, on no
 *  digits, or on overflow. The value is in `parsed`. */
export let parsed: i64 = 0;

export function parseInt64(text: Uint8Array): bool {
  let s = 0;
  let e = text.length;
  while (s < e && isSpace(<u32>text[s])) s++;
  while (e > s && isSpace(<u32>text[e - 1])) e--;
  const neg = s < e && text[s] == 45; // '-'
  if (s < e && (text[s] == 45 || text[s] == 43)) s++; // '-' or '+'
  if (s == e) return false;
  let v: i64 = 0; // accumulated negatively so that i64.MIN_VALUE parses
  for (let i = s; i < e; i++) {
    const c = <i64>text[i] - 48;
    if (c < 0 || c > 9) return false;
    if (v < (i64.MIN_VALUE + c) / 10) return false; // v * 10 - c would overflow
    v = v * 10 - c;
  }
  if (!neg) {
    if (v == i64.MIN_VALUE) return false;
    v = -v;
  }
  parsed = v;
  return true;
}

/** Decodes %XX escapes and '+' (a space). A stray '%' stays as it is. */
export function percentDecode(s: Uint8Array): Uint8Array {
  const out = new Uint8Array(s.length);
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c == 37 && i + 2 < s.length) { // '%'
      const hi = hexDigit(s[i + 1]);
      const lo = hexDigit(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out[n++] = <u8>((hi << 4) | lo);
        i += 2;
        continue;
      }
    }
    out[n++] = c == 43 ? 32 : c; // '+' is a space
  }
  return out.subarray(0, n);
}

function hexDigit(c: u8): i32 {
  if (c >= 48 && c <= 57) return <i32>c - 48;
  if (c >= 97 && c <= 102) return <i32>c - 87;
  if (c >= 65 && c <= 70) return <i32>c - 55;
  return -1;
}
