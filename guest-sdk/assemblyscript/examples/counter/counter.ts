// counter - the smallest useful durable object: one integer in storage, the same routes
// as samples/counter (C). Values are decimal text (text/plain; charset=utf-8).
//
//   GET  /       -> the current value
//   POST /incr   -> adds 1, or the integer in the body (may be negative); the new value
//   POST /reset  -> sets it to 0; the new value
//
// A storage failure fails the event (500, nothing written), as in the C sample.

import {
  DurableObject, Request, Response, Storage, Status, failEvent, parseInt64, parsed, register, utf8,
} from "../../assembly";
export { dohost_abi_v1, dohost_fetch } from "../../assembly/exports";

const KEY = utf8("count");
let failure: i32 = 0; // set by load() and store() when storage fails

class Counter extends DurableObject {
  fetch(req: Request): Response | null {
    failure = 0;
    if (req.path == "/") {
      if (req.method != "GET") return methodNotAllowed("GET");
      const value = load();
      return failure < 0 ? failEvent(failure) : plain(value.toString());
    }
    if (req.path == "/incr") {
      if (req.method != "POST") return methodNotAllowed("POST");
      let delta: i64 = 1;
      if (req.body.length > 0) {
        if (!parseInt64(req.body)) return Response.text(400, "body must be an integer\n");
        delta = parsed;
      }
      const value = load();
      if (failure < 0) return failEvent(failure);
      if (delta > 0 ? value > i64.MAX_VALUE - delta : value < i64.MIN_VALUE - delta) {
        return Response.text(400, "counter would overflow\n");
      }
      return store(value + delta);
    }
    if (req.path == "/reset") {
      if (req.method != "POST") return methodNotAllowed("POST");
      return store(0);
    }
    return Response.text(404, "not found\n");
  }
}

/** The stored value; a missing key means 0. */
function load(): i64 {
  const v = Storage.get(KEY);
  if (v === null) {
    if (Storage.status != Status.NOT_FOUND) failure = Storage.status;
    return 0;
  }
  if (!parseInt64(v)) failure = Status.BAD_ENCODING;
  return parsed;
}

/** Stores the value and answers with it. */
function store(value: i64): Response | null {
  const text = value.toString();
  const st = Storage.put(KEY, utf8(text));
  return st < 0 ? failEvent(st) : plain(text);
}

function plain(text: string): Response {
  return Response.text(200, text);
}

function methodNotAllowed(allow: string): Response {
  return Response.text(405, "method not allowed\n").header("allow", allow);
}

register(new Counter());
