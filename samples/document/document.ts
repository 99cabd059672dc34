// document - a collaborative text document, one durable object per document, written with
// the AssemblyScript SDK.
//
//   GET  /      -> {"text": "...", "version": V}
//   POST /ops   {"version": V, "ops": [{"insert": {"pos": P, "text": "..."}},
//                                      {"delete": {"pos": P, "len": N}}, ...]}
//               -> 200 {"version": V + 1} when V is the current version: the ops apply in
//                  order, each to the text the previous one produced, all or nothing;
//               -> 409 {"error": "version conflict", "version": current} otherwise: fetch
//                  the text again (or transform your ops) and retry.
//
// Positions and lengths count UTF-16 code units, as JavaScript string indices do; an op
// that would split a surrogate pair is refused. The text is at most 1 MiB of UTF-8.
// Every request to one document is served by the same object, one at a time, so the
// version check and the write cannot interleave with another client's.
//
// Storage: "text" (UTF-8) and "version" (decimal). The object keeps both in memory for
// the activation: dohost_init loads them, and a write updates them only after storage
// accepted it (a failed event discards the activation, memory included).

import {
  DurableObject, Entry, Request, Response, Status, Storage, failEvent, parseInt64, parsed, register, str, utf8,
} from "../../guest-sdk/assemblyscript/assembly";
export { dohost_abi_v1, dohost_fetch, dohost_init } from "../../guest-sdk/assemblyscript/assembly/exports";
import { JValue, Kind, parseJson, quote } from "./json";

const KEY_TEXT = utf8("text");
const KEY_VERSION = utf8("version");
const MAX_TEXT_BYTES = 1 << 20;
const MAX_OPS = 10000;

function isHigh(c: i32): bool {
  return c >= 0xd800 && c <= 0xdbff;
}

function isLow(c: i32): bool {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** True when `pos` is a position in `s` that does not split a surrogate pair. */
function isBoundary(s: string, pos: i32): bool {
  if (pos < 0 || pos > s.length) return false;
  return pos == 0 || pos == s.length || !(isHigh(s.charCodeAt(pos - 1)) && isLow(s.charCodeAt(pos)));
}

function error(status: i32, message: string): Response {
  return Response.json(status, "{\"error\":" + quote(message) + "}\n");
}

class Document extends DurableObject {
  text: string = "";
  version: i64 = 0;

  /** Loads the document (once per activation, before its first event). */
  init(): i32 {
    const text = Storage.get(KEY_TEXT);
    if (text === null && Storage.status != Status.NOT_FOUND) return Storage.status;
    const version = Storage.get(KEY_VERSION);
    if (version === null && Storage.status != Status.NOT_FOUND) return Storage.status;
    this.text = text !== null ? str(text) : "";
    if (version !== null) {
      if (!parseInt64(version)) return Status.BAD_ENCODING;
      this.version = parsed;
    }
    return 0;
  }

  fetch(req: Request): Response | null {
    if (req.path == "/") {
      if (req.method != "GET") return Response.text(405, "method not allowed\n").header("allow", "GET");
      return Response.json(200, "{\"text\":" + quote(this.text) + ",\"version\":" + this.version.toString() + "}\n");
    }
    if (req.path == "/ops") {
      if (req.method != "POST") return Response.text(405, "method not allowed\n").header("allow", "POST");
      return this.applyOps(req);
    }
    return Response.text(404, "not found\n");
  }

  applyOps(req: Request): Response | null {
    const body = parseJson(req.text());
    if (body === null || body.kind != Kind.Object) return error(400, "body must be a JSON object");
    const version = body.get("version");
    if (version === null || !version.isInt()) return error(400, "version must be an integer");
    if (<i64>version.num != this.version) {
      return Response.json(409, "{\"error\":\"version conflict\",\"version\":" + this.version.toString() + "}\n");
    }
    const ops = body.get("ops");
    if (ops === null || ops.kind != Kind.Array) return error(400, "ops must be an array");
    if (ops.items.length > MAX_OPS) return error(400, "at most " + MAX_OPS.toString() + " ops per request");

    let text = this.text;
    for (let i = 0; i < ops.items.length; i++) {
      const op = ops.items[i];
      const where = "ops[" + i.toString() + "]: ";
      if (op.kind != Kind.Object || op.keys.length != 1) {
        return error(400, where + "must be {\"insert\": {...}} or {\"delete\": {...}}");
      }
      const args = op.items[0];
      const pos = args.get("pos");
      if (args.kind != Kind.Object || pos === null || !pos.isInt()) return error(400, where + "needs an integer pos");
      const at = <i32>pos.num;
      if (!isBoundary(text, at) || pos.num != <f64>at) {
        return error(422, where + "pos " + (<i64>pos.num).toString() + " is outside the text (or splits a character)");
      }
      if (op.keys[0] == "insert") {
        const t = args.get("text");
        if (t === null || t.kind != Kind.String) return error(400, where + "insert needs a string text");
        text = text.substring(0, at) + t.str + text.substring(at);
      } else if (op.keys[0] == "delete") {
        const len = args.get("len");
        if (len === null || !len.isInt() || len.num < 0) return error(400, where + "delete needs an integer len >= 0");
        const end = <f64>at + len.num;
        if (end > <f64>text.length || !isBoundary(text, <i32>end)) {
          return error(422, where + "the deleted range is outside the text (or splits a character)");
        }
        text = text.substring(0, at) + text.substring(<i32>end);
      } else {
        return error(400, where + "unknown op " + quote(op.keys[0]));
      }
    }

    const bytes = utf8(text);
    if (bytes.length > MAX_TEXT_BYTES) return error(413, "the text would be above 1 MiB");
    const next = this.version + 1;
    const st = Storage.putMany([new Entry(KEY_TEXT, bytes), new Entry(KEY_VERSION, utf8(next.toString()))]);
    if (st < 0) return failEvent(st); // rolled back; the activation (and its memory) is dropped
    this.text = text;
    this.version = next;
    return Response.json(200, "{\"version\":" + next.toString() + "}\n");
  }
}

register(new Document());
