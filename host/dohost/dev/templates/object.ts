// {{name}} - a durable object made by `dohost init`. One integer in storage:
//
//   GET  /       -> the count
//   POST /incr   -> adds STEP and answers the new count (and logs a line)
//
// Each request is one event: its writes commit together before the response leaves.
// The SDK is the AssemblyScript SDK of the installed dohost (`dohost sdk assemblyscript`
// prints where); the build resolves "dohost/..." to it.

import {
  DurableObject, Request, Response, Status, Storage, failEvent, log, parseInt64, parsed, register,
  utf8,
} from "dohost/assembly/index";
export { dohost_abi_v1, dohost_fetch } from "dohost/assembly/exports";

const KEY = utf8("count");
const STEP: i64 = 1;

class Counter extends DurableObject {
  fetch(req: Request): Response | null {
    const stored = Storage.get(KEY);
    let value: i64 = 0;
    if (stored === null) {
      if (Storage.status != Status.NOT_FOUND) return failEvent(Storage.status);
    } else {
      if (!parseInt64(stored)) return failEvent(Status.BAD_ENCODING);
      value = parsed;
    }
    if (req.path == "/" && req.method == "GET") return Response.text(200, value.toString());
    if (req.path == "/incr" && req.method == "POST") {
      value += STEP;
      const st = Storage.put(KEY, utf8(value.toString()));
      if (st < 0) return failEvent(st);
      log.info("incremented");
      return Response.text(200, value.toString());
    }
    return Response.text(404, "not found\n");
  }
}

register(new Counter());
