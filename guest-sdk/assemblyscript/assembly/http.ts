// Requests (abi/request.cddl) and responses (abi/response.cddl).

import * as raw from "./raw";
import { Decoder, Encoder } from "./cbor";
import { bytesEqual, parsed, parseInt64, percentDecode, utf8 } from "./bytes";

export class Header {
  constructor(public name: string, public value: string) {}
}

/** A fetch event's request. Header names are lower case; duplicates kept in order. */
export class Request {
  method: string = "";
  /** Begins with "/"; percent-encoding kept. */
  path: string = "";
  /** The raw query string without "?"; "" when absent. */
  query: string = "";
  /** The query's raw UTF-8 bytes (what `param` reads). */
  queryBytes: Uint8Array = new Uint8Array(0);
  headers: Header[] = [];
  body: Uint8Array = new Uint8Array(0);

  /** Decodes a request; null when it is not one. */
  static decode(input: Uint8Array): Request | null {
    const d = new Decoder(input);
    const req = new Request();
    const n = d.map();
    for (let i = 0; i < n && d.ok; i++) {
      d.readKey();
      if (d.is("method")) req.method = d.text();
      else if (d.is("path")) req.path = d.text();
      else if (d.is("query")) {
        req.queryBytes = d.textBytes();
        req.query = String.UTF8.decodeUnsafe(req.queryBytes.dataStart, <usize>req.queryBytes.length);
      } else if (d.is("headers")) {
        const count = d.array();
        for (let j = 0; j < count && d.ok; j++) {
          if (d.array() != 2) return null;
          const name = d.text();
          req.headers.push(new Header(name, d.text()));
        }
      } else if (d.is("body")) req.body = d.bytes();
      else d.skip(); // request.cddl: ignore keys we do not know
    }
    return d.done ? req : null;
  }

  /** True when both the method and the path match. */
  is(method: string, path: string): bool {
    return this.method == method && this.path == path;
  }

  /** The first header with this name (case-insensitive), or null. */
  header(name: string): string | null {
    const lower = name.toLowerCase();
    for (let i = 0; i < this.headers.length; i++) {
      if (this.headers[i].name.toLowerCase() == lower) return this.headers[i].value;
    }
    return null;
  }

  /** The first query parameter `name`, percent-decoded ('+' is a space), or null.
   *  "?a" and "?a=" give an empty value. */
  param(name: string): Uint8Array | null {
    const q = this.queryBytes;
    const want = utf8(name);
    let start = 0;
    while (start < q.length) {
      let amp = start;
      while (amp < q.length && q[amp] != 38) amp++; // '&'
      let eq = start;
      while (eq < amp && q[eq] != 61) eq++; // '='
      if (bytesEqual(q.subarray(start, eq), want)) {
        return percentDecode(q.subarray(eq < amp ? eq + 1 : amp, amp));
      }
      start = amp + 1;
    }
    return null;
  }

  /** `param` as text, or null. */
  paramString(name: string): string | null {
    const v = this.param(name);
    return v === null ? null : String.UTF8.decodeUnsafe(v.dataStart, <usize>v.length);
  }

  /** `param` as a decimal integer, or `otherwise` when absent or not an integer. */
  paramInt(name: string, otherwise: i64 = 0): i64 {
    const v = this.param(name);
    return v !== null && parseInt64(v) ? parsed : otherwise;
  }

  /** The body as UTF-8 text. */
  text(): string {
    return String.UTF8.decodeUnsafe(this.body.dataStart, <usize>this.body.length);
  }
}

/** A response: build one with the static helpers, add headers with `header()`. */
export class Response {
  /** 100..599 (the host refuses others with BAD_ENCODING). */
  status: i32;
  headers: Header[] = [];
  body: Uint8Array;

  constructor(status: i32 = 200, body: Uint8Array | null = null) {
    this.status = status;
    this.body = body !== null ? body : new Uint8Array(0);
  }

  /** text/plain; charset=utf-8 */
  static text(status: i32, text: string): Response {
    return Response.bytes(status, "text/plain; charset=utf-8", utf8(text));
  }

  /** application/json (the body is sent as given). */
  static json(status: i32, text: string): Response {
    return Response.bytes(status, "application/json", utf8(text));
  }

  /** A body with a content type. */
  static bytes(status: i32, contentType: string, body: Uint8Array): Response {
    return new Response(status, body).header("content-type", contentType);
  }

  /** Adds a header; returns this response. */
  header(name: string, value: string): Response {
    this.headers.push(new Header(name, value));
    return this;
  }

  encode(): Encoder {
    let size = this.body.length + 40;
    for (let i = 0; i < this.headers.length; i++) {
      size += 3 * (this.headers[i].name.length + this.headers[i].value.length) + 10;
    }
    const e = new Encoder(size);
    e.map(3).text("status").int(<i64>this.status);
    e.text("headers").array(this.headers.length);
    for (let i = 0; i < this.headers.length; i++) {
      e.array(2).text(this.headers[i].name).text(this.headers[i].value);
    }
    e.text("body").bytes(this.body);
    return e;
  }

  /** Sets this as the event's response now (the last one set wins); returns 0 or a
   *  negative status. `fetch` does this with the response it returns. */
  send(): i32 {
    const e = this.encode();
    return raw.response_set(e.dataStart, <usize>e.length);
  }
}
