// Durable object classes and the exports that drive them.

import * as raw from "./raw";
import { Decoder } from "./cbor";
import { Request, Response } from "./http";
import { takeOutput, outputStatus } from "./output";
import { Status, statusName } from "./status";
import { log } from "./util";
import { WsClose, WsError, WsMessage, decodeWsClose, decodeWsError, decodeWsMessage } from "./ws";

/** The alarm that fired (abi/alarm.cddl). */
export class AlarmInfo {
  /** The time the alarm was set for, ms since the Unix epoch. */
  scheduledMs: i64 = 0;
  /** 0 on the first run, n on the n-th retry. */
  retryCount: u64 = 0;
  isRetry: bool = false;
}

/** Extend this class and `register` one instance of it. The instance serves every event
 *  of the activation, one at a time; the host may drop the activation between any two
 *  events, so durable state belongs in Storage. */
export class DurableObject {
  /** An HTTP-shaped request arrived. Return the response (sent once the event's writes are
   *  durable), or null to set none (the last `Response.send()` stands, or the host answers
   *  204). `return failEvent(code)` fails the event: its writes are rolled back and the
   *  caller gets 500. So does an abort (`throw`, `assert`, `unreachable()`). */
  fetch(req: Request): Response | null {
    return Response.text(404, "not found\n");
  }

  /** Runs once per activation before its first event, when the entry file re-exports
   *  `dohost_init`. Storage works; writes join the first event's transaction. Return 0,
   *  or anything else to fail the event. */
  init(): i32 {
    return 0;
  }

  /** The object's alarm fired (see Alarm), when the entry file re-exports `dohost_alarm`.
   *  Return 0, or anything else to roll back its writes and have it retried (a new alarm
   *  the failing handler set replaces the retry). */
  alarm(info: AlarmInfo): i32 {
    return 0;
  }

  /** A message arrived on one of the object's WebSocket connections (see WebSocket), when
   *  the entry file re-exports `dohost_ws_message`, which is also what lets
   *  WebSocket.accept() succeed. Return 0, or anything else to fail the event (writes
   *  rolled back, sends dropped; the connection stays open). */
  webSocketMessage(msg: WsMessage): i32 {
    return 0;
  }

  /** A connection the client ended, or that failed, when the entry file re-exports
   *  `dohost_ws_close`. Not called for connections the object closed itself. */
  webSocketClose(ev: WsClose): i32 {
    return 0;
  }

  /** A connection failed (its close event follows), when the entry file re-exports
   *  `dohost_ws_error`. */
  webSocketError(ev: WsError): i32 {
    return 0;
  }
}

let object: DurableObject | null = null;
let failure: i32 = 0;

/** Sets the object that serves this module's events (call it at the top level). */
export function register(obj: DurableObject): void {
  object = obj;
}

/** Fails the current event with `code` (non-zero; the export returns it). Use as
 *  `return failEvent(7);` in fetch. */
export function failEvent(code: i32 = 1): Response | null {
  failure = code != 0 ? code : 1;
  return null;
}

function instance(): DurableObject {
  const o = object;
  if (o === null) {
    log.error("dohost: no object registered: call register(new YourClass()) at the top level");
    unreachable();
  }
  return o!;
}

function readInput(len: i32): Uint8Array | null {
  const buf = new Uint8Array(len > 0 ? len : 0);
  return takeOutput(buf, raw.input_read(buf.dataStart, <usize>buf.length));
}

function failed(what: string, status: i32): i32 {
  log.error("dohost: " + what + " failed: " + statusName(status));
  return status != 0 ? status : -1;
}

/** The minimal runtime collects only when asked: at the end of each event, when the only
 *  live objects are those reachable from globals. */
function endEvent(rc: i32): i32 {
  if (ASC_RUNTIME == 1) __collect();
  return rc;
}

export function runFetch(len: i32): i32 {
  const obj = instance();
  failure = 0;
  const input = readInput(len);
  if (input === null) return endEvent(failed("reading the request", outputStatus));
  const req = Request.decode(input);
  if (req === null) return endEvent(failed("decoding the request", Status.SDK_DECODE));
  const resp = obj.fetch(req);
  if (failure != 0) return endEvent(failure);
  if (resp !== null) {
    const st = resp.send();
    if (st < 0) return endEvent(failed("response_set", st));
  }
  return endEvent(0);
}

export function runInit(): i32 {
  return endEvent(instance().init());
}

export function runAlarm(len: i32): i32 {
  const obj = instance();
  const input = readInput(len);
  if (input === null) return endEvent(failed("reading the alarm info", outputStatus));
  const d = new Decoder(input);
  const info = new AlarmInfo();
  const n = d.map();
  for (let i = 0; i < n && d.ok; i++) {
    d.readKey();
    if (d.is("scheduled_ms")) info.scheduledMs = d.int();
    else if (d.is("retry_count")) info.retryCount = d.uint();
    else if (d.is("is_retry")) info.isRetry = d.bool();
    else d.skip();
  }
  if (!d.done) return endEvent(failed("decoding the alarm info", Status.SDK_DECODE));
  return endEvent(obj.alarm(info));
}

export function runWsMessage(len: i32): i32 {
  const obj = instance();
  const input = readInput(len);
  if (input === null) return endEvent(failed("reading the WebSocket message", outputStatus));
  const msg = decodeWsMessage(input);
  if (msg === null) return endEvent(failed("decoding the WebSocket message", Status.SDK_DECODE));
  return endEvent(obj.webSocketMessage(msg));
}

export function runWsClose(len: i32): i32 {
  const obj = instance();
  const input = readInput(len);
  if (input === null) return endEvent(failed("reading the WebSocket close", outputStatus));
  const ev = decodeWsClose(input);
  if (ev === null) return endEvent(failed("decoding the WebSocket close", Status.SDK_DECODE));
  return endEvent(obj.webSocketClose(ev));
}

export function runWsError(len: i32): i32 {
  const obj = instance();
  const input = readInput(len);
  if (input === null) return endEvent(failed("reading the WebSocket error", outputStatus));
  const ev = decodeWsError(input);
  if (ev === null) return endEvent(failed("decoding the WebSocket error", Status.SDK_DECODE));
  return endEvent(obj.webSocketError(ev));
}
