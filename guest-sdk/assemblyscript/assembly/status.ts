// Status codes (abi/README.md section 6). Every SDK call that can fail returns or records
// one: >= 0 is success (a length, a count or 0), < 0 an error.

import * as raw from "./raw";
import { Decoder } from "./cbor";
import { takeOutput, outputStatus, SCRATCH } from "./output";

export namespace Status {
  export const OK: i32 = 0;
  export const INTERNAL: i32 = -1;
  export const BAD_POINTER: i32 = -2;
  export const NOT_FOUND: i32 = -3;
  export const KEY_TOO_LARGE: i32 = -4;
  export const VALUE_TOO_LARGE: i32 = -5;
  export const TOO_MANY_KEYS: i32 = -6;
  export const QUOTA_EXCEEDED: i32 = -7;
  export const BAD_ENCODING: i32 = -8;
  export const NOT_SUPPORTED: i32 = -9;
  export const NO_RESULT: i32 = -10;
  export const INVALID_ARGUMENT: i32 = -11;
  export const STORAGE_ERROR: i32 = -12;
  export const BUFFER_TOO_SMALL: i32 = -13;
  export const LIMIT_EXCEEDED: i32 = -14;
  /** The call would wait for an event that waits for the caller (the message names the chain). */
  export const CALL_CYCLE: i32 = -15;
  /** The call chain would be more than 16 calls deep. */
  export const CALL_DEPTH: i32 = -16;
  /** The call could not be made: no such class, an invalid id, the host shutting down. */
  export const CALL_FAILED: i32 = -17;
  /** SQLite rejected or failed the statement; the message is SQLite's. */
  export const SQL_ERROR: i32 = -18;
  /** The statement does something guests may not (BEGIN, ATTACH, the host's tables...). */
  export const SQL_REFUSED: i32 = -19;
  /** SDK: guest memory could not grow (in practice AssemblyScript aborts first). */
  export const NO_MEMORY: i32 = -100;
  /** SDK: what the host sent could not be decoded. */
  export const SDK_DECODE: i32 = -101;
}

const NAMES: string[] = [
  "internal", "bad_pointer", "not_found", "key_too_large", "value_too_large",
  "too_many_keys", "quota_exceeded", "bad_encoding", "not_supported", "no_result",
  "invalid_argument", "storage_error", "buffer_too_small", "limit_exceeded",
  "call_cycle", "call_depth", "call_failed", "sql_error", "sql_refused",
];

/** The stable name of a status: "ok" for >= 0, "not_found", ..., "unknown". */
export function statusName(status: i32): string {
  if (status >= 0) return "ok";
  if (status >= -NAMES.length) return NAMES[-status - 1];
  if (status == Status.NO_MEMORY) return "out_of_memory";
  if (status == Status.SDK_DECODE) return "sdk_decode";
  return "unknown";
}

/** The detail of a failed import (abi/error.cddl). */
export class ErrorDetail {
  code: i32 = 0;
  name: string = "";
  message: string = "";
}

let lastErrorStatus: i32 = 0;

/** The status of the last `lastError()` call: 0, NO_RESULT when no import failed, ... */
export function lastErrorCallStatus(): i32 {
  return lastErrorStatus;
}

/** The detail of the last failed import of this event, or null when none failed (see
 *  `lastErrorCallStatus()` for why it is null). */
export function lastError(): ErrorDetail | null {
  const out = takeOutput(SCRATCH, raw.last_error(SCRATCH.dataStart, <usize>SCRATCH.length));
  lastErrorStatus = outputStatus;
  if (out === null) return null;
  const d = new Decoder(out);
  const detail = new ErrorDetail();
  const n = d.map();
  for (let i = 0; i < n && d.ok; i++) {
    d.readKey();
    if (d.is("code")) detail.code = <i32>d.int();
    else if (d.is("name")) detail.name = d.text();
    else if (d.is("message")) detail.message = d.text();
    else d.skip();
  }
  if (!d.done) {
    lastErrorStatus = Status.SDK_DECODE;
    return null;
  }
  return detail;
}
