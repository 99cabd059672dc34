// Just enough JSON for the document sample: a parser into a small tree, and string quoting.

export enum Kind { Null, Bool, Number, String, Array, Object }

export class JValue {
  kind: Kind = Kind.Null;
  bool: bool = false;
  num: f64 = 0;
  str: string = "";
  items: JValue[] = []; // array items, or object values
  keys: string[] = []; // object keys

  /** The value of an object's key, or null. */
  get(key: string): JValue | null {
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] == key) return this.items[i];
    return null;
  }

  /** True for a number that is an integer in the safe range. */
  isInt(): bool {
    return this.kind == Kind.Number && Math.floor(this.num) == this.num && Math.abs(this.num) <= 9007199254740991;
  }
}

const MAX_DEPTH = 32;

class Parser {
  i: i32 = 0;
  ok: bool = true;
  constructor(public s: string) {}

  fail(): JValue {
    this.ok = false;
    return new JValue();
  }

  ws(): void {
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if (c != 32 && c != 9 && c != 10 && c != 13) break;
      this.i++;
    }
  }

  lit(word: string): bool {
    if (this.s.substr(this.i, word.length) != word) return false;
    this.i += word.length;
    return true;
  }

  value(depth: i32): JValue {
    this.ws();
    if (!this.ok || this.i >= this.s.length || depth > MAX_DEPTH) return this.fail();
    const c = this.s.charCodeAt(this.i);
    const v = new JValue();
    if (c == 123) return this.object(depth); // {
    if (c == 91) return this.array(depth); // [
    if (c == 34) { // "
      v.kind = Kind.String;
      v.str = this.string();
      return v;
    }
    if (this.lit("true") || this.lit("false")) {
      v.kind = Kind.Bool;
      v.bool = this.s.charCodeAt(this.i - 4) == 116; // "true" ends 4 back at its "t"
      return v;
    }
    if (this.lit("null")) return v;
    return this.number();
  }

  number(): JValue {
    const start = this.i;
    if (this.i < this.s.length && this.s.charCodeAt(this.i) == 45) this.i++; // -
    let digits = 0;
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if ((c >= 48 && c <= 57) || c == 46 || c == 101 || c == 69 || c == 43 || c == 45) {
        if (c >= 48 && c <= 57) digits++;
        this.i++;
      } else break;
    }
    if (digits == 0) return this.fail();
    const v = new JValue();
    v.kind = Kind.Number;
    v.num = parseFloat(this.s.substring(start, this.i));
    if (isNaN(v.num) || !isFinite(v.num)) return this.fail();
    return v;
  }

  hex4(): i32 {
    if (this.i + 4 > this.s.length) {
      this.ok = false;
      return 0;
    }
    const n = I32.parseInt(this.s.substr(this.i, 4), 16);
    for (let k = 0; k < 4; k++) {
      const c = this.s.charCodeAt(this.i + k);
      if (!((c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102))) this.ok = false;
    }
    this.i += 4;
    return n;
  }

  string(): string {
    this.i++; // the opening quote
    const parts: string[] = [];
    let start = this.i;
    while (this.ok) {
      if (this.i >= this.s.length) {
        this.ok = false;
        break;
      }
      const c = this.s.charCodeAt(this.i);
      if (c == 34) break; // closing quote
      if (c < 32) {
        this.ok = false;
        break;
      }
      if (c != 92) { // not a backslash
        this.i++;
        continue;
      }
      parts.push(this.s.substring(start, this.i));
      this.i++;
      const e = this.i < this.s.length ? this.s.charCodeAt(this.i++) : 0;
      if (e == 34) parts.push("\"");
      else if (e == 92) parts.push("\\");
      else if (e == 47) parts.push("/");
      else if (e == 98) parts.push("\b");
      else if (e == 102) parts.push("\f");
      else if (e == 110) parts.push("\n");
      else if (e == 114) parts.push("\r");
      else if (e == 116) parts.push("\t");
      else if (e == 117) parts.push(String.fromCharCode(this.hex4())); // \uXXXX (surrogates pair up)
      else this.ok = false;
      start = this.i;
    }
    parts.push(this.s.substring(start, this.i));
    this.i++;
    return parts.join("");
  }

  array(depth: i32): JValue {
    this.i++;
    const v = new JValue();
    v.kind = Kind.Array;
    this.ws();
    if (this.i < this.s.length && this.s.charCodeAt(this.i) == 93) {
      this.i++;
      return v;
    }
    while (this.ok) {
      v.items.push(this.value(depth + 1));
      this.ws();
      const c = this.i < this.s.length ? this.s.charCodeAt(this.i++) : 0;
      if (c == 93) return v; // ]
      if (c != 44) return this.fail(); // ,
    }
    return v;
  }

  object(depth: i32): JValue {
    this.i++;
    const v = new JValue();
    v.kind = Kind.Object;
    this.ws();
    if (this.i < this.s.length && this.s.charCodeAt(this.i) == 125) {
      this.i++;
      return v;
    }
    while (this.ok) {
      this.ws();
      if (this.i >= this.s.length || this.s.charCodeAt(this.i) != 34) return this.fail();
      v.keys.push(this.string());
      this.ws();
      if (this.i >= this.s.length || this.s.charCodeAt(this.i++) != 58) return this.fail(); // :
      v.items.push(this.value(depth + 1));
      this.ws();
      const c = this.i < this.s.length ? this.s.charCodeAt(this.i++) : 0;
      if (c == 125) return v; // }
      if (c != 44) return this.fail();
    }
    return v;
  }
}

/** Parses a JSON document; null when it is not valid JSON. */
export function parseJson(s: string): JValue | null {
  const p = new Parser(s);
  const v = p.value(0);
  p.ws();
  return p.ok && p.i == s.length ? v : null;
}

const HEX = "0123456789abcdef";

/** A JSON string literal for `s`. */
export function quote(s: string): string {
  const parts: string[] = ["\""];
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 32 && c != 34 && c != 92) continue;
    parts.push(s.substring(start, i));
    if (c == 34) parts.push("\\\"");
    else if (c == 92) parts.push("\\\\");
    else if (c == 10) parts.push("\\n");
    else if (c == 13) parts.push("\\r");
    else if (c == 9) parts.push("\\t");
    else parts.push("\\u00" + HEX.charAt(c >> 4) + HEX.charAt(c & 15));
    start = i + 1;
  }
  parts.push(s.substring(start));
  parts.push("\"");
  return parts.join("");
}
