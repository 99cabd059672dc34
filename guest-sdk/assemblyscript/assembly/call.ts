// Calls to other objects (abi/README.md, section 5 "Object calls"; abi/call.cddl).
//
//   const resp = Call.byName("pipeline", "build-main",
//                            new CallRequest("POST", "/runs/7/finished").withBody(utf8("{}")));
//   if (resp === null) return failEvent(Call.status);  // could not be made: lastError()
//   if (resp.status >= 500) ...                         // the callee failed: a JSON error
//
// A call sends a fetch-shaped request to another object of the same tenant (any of its
// classes, by name or by id) and returns that object's response. What to know:
// - A call is a commit point: the event's writes so far are committed, and durable, before
//   the call leaves; writes after it form a new transaction.
// - The callee runs its own event with its own limits. If it traps or runs out of CPU time
//   the call still succeeds: a 500 response with the JSON body
//   {"error": {"code": "object_error" | "cpu_limit", "message": ...}}.
// - null (the status in Call.status) means the call could not be made: Status.CALL_CYCLE
//   (the target is already waiting in this call chain, e.g. A -> B -> A or A calling
//   itself; the message names the chain), CALL_DEPTH (more than 16 calls deep),
//   CALL_FAILED (no such class in this tenant, an id of another class or a forged one, the
//   host shutting down), BAD_ENCODING (a path not beginning with "/", an invalid header).
// - A callee learns who called from headers only the host sets: Call.caller(req).
//   Call.self() gives an object its own address, e.g. to pass on for a callback.

import * as raw from "./raw";
import { Decoder, Encoder } from "./cbor";
import { Header, Request } from "./http";
import { SCRATCH, outputStatus, takeOutput } from "./output";
import { Status } from "./status";

/** The request to send (abi/request.cddl): GET / unless set. Header names reach the
 *  callee in lower case. */
export class CallRequest {
  method: string;
  /** Must begin with "/". */
  path: string;
  /** Without the "?". */
  query: string = "";
  headers: Header[] = [];
  body: Uint8Array = new Uint8Array(0);

  constructor(method: string = "GET", path: string = "/") {
    this.method = method;
    this.path = path;
  }

  withQuery(query: string): CallRequest {
    this.query = query;
    return this;
  }

  header(name: string, value: string): CallRequest {
    this.headers.push(new Header(name, value));
    return this;
  }

  withBody(body: Uint8Array): CallRequest {
    this.body = body;
    return this;
  }

  encode(): Encoder {
    const e = new Encoder(this.body.length + 3 * (this.path.length + this.query.length) + 64);
    e.map(5).text("method").text(this.method).text("path").text(this.path);
    e.text("query").text(this.query).text("headers").array(this.headers.length);
    for (let i = 0; i < this.headers.length; i++) {
      e.array(2).text(this.headers[i].name).text(this.headers[i].value);
    }
    e.text("body").bytes(this.body);
    return e;
  }
}

/** The callee's response, as it set it (hop-by-hop headers dropped; 204 when it set none). */
export class CallResponse {
  status: i32 = 200;
  headers: Header[] = [];
  body: Uint8Array = new Uint8Array(0);

  /** The first header with this name (case-insensitive), or null. */
  header(name: string): string | null {
    const lower = name.toLowerCase();
    for (let i = 0; i < this.headers.length; i++) {
      if (this.headers[i].name.toLowerCase() == lower) return this.headers[i].value;
    }
    return null;
  }
}

function decodeResponse(out: Uint8Array): CallResponse | null {
  const d = new Decoder(out);
  const r = new CallResponse();
  const n = d.map();
  for (let i = 0; i < n && d.ok; i++) {
    d.readKey();
    if (d.is("status")) r.status = <i32>d.uint();
    else if (d.is("headers")) {
      const count = d.array();
      for (let j = 0; j < count && d.ok; j++) {
        if (d.array() != 2) return null;
        const name = d.text();
        r.headers.push(new Header(name, d.text()));
      }
    } else if (d.is("body")) r.body = d.bytes();
    else d.skip(); // response.cddl may grow
  }
  return d.done ? r : null;
}

/** An object's address. */
export class ObjectRef {
  className: string = "";
  /** 64 hex characters. */
  id: string = "";
  /** null when the host does not know it (the object was addressed by id). */
  name: string | null = null;
}

export class Call {
  /** The status of the last call: the response's HTTP status, or a negative status. */
  static status: i32 = 0;

  private static send(cls: string, key: string, value: string, req: CallRequest | null): CallResponse | null {
    const t = new Encoder(cls.length + value.length + 32);
    t.map(2).text("class").text(cls).text(key).text(value);
    const r = (req !== null ? req : new CallRequest()).encode();
    const st = raw.call(t.dataStart, <usize>t.length, r.dataStart, <usize>r.length,
                        SCRATCH.dataStart, <usize>SCRATCH.length);
    const out = takeOutput(SCRATCH, st);
    if (out === null) {
      Call.status = outputStatus;
      return null;
    }
    const resp = decodeResponse(out);
    Call.status = resp !== null ? resp.status : Status.SDK_DECODE;
    return resp;
  }

  /** Calls the object named `name` of class `cls` (of this tenant); the callee's response
   *  whatever its status, or null when the call could not be made (see Call.status). */
  static byName(cls: string, name: string, req: CallRequest | null = null): CallResponse | null {
    return Call.send(cls, "name", name, req);
  }

  /** Calls the object with this id (64 hex characters, as the host prints it) of `cls`. */
  static byId(cls: string, id: string, req: CallRequest | null = null): CallResponse | null {
    return Call.send(cls, "id", id, req);
  }

  /** This object's own class, id and (when known) name; null on failure (Call.status). */
  static self(): ObjectRef | null {
    const out = takeOutput(SCRATCH, raw.object_info(SCRATCH.dataStart, <usize>SCRATCH.length));
    Call.status = outputStatus;
    if (out === null) return null;
    const d = new Decoder(out);
    const ref = new ObjectRef();
    const n = d.map();
    for (let i = 0; i < n && d.ok; i++) {
      d.readKey();
      if (d.is("class")) ref.className = d.text();
      else if (d.is("id")) ref.id = d.text();
      else if (d.is("name")) ref.name = d.text();
      else d.skip();
    }
    if (!d.done) {
      Call.status = Status.SDK_DECODE;
      return null;
    }
    return ref;
  }

  /** Who called, when this fetch event is a call: from the headers dohost-caller-class,
   *  -id and -name, which only the host sets. null for a request that is not a call. */
  static caller(req: Request): ObjectRef | null {
    const cls = req.header("dohost-caller-class");
    const id = req.header("dohost-caller-id");
    if (cls === null || id === null) return null;
    const ref = new ObjectRef();
    ref.className = cls;
    ref.id = id;
    ref.name = req.header("dohost-caller-name");
    return ref;
  }
}
