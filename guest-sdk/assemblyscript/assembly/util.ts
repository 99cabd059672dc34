// Logging, time and randomness.

import * as raw from "./raw";
import { utf8 } from "./bytes";

export namespace Level {
  export const DEBUG: i32 = 0;
  export const INFO: i32 = 1;
  export const WARN: i32 = 2;
  export const ERROR: i32 = 3;
}

/** Logs bytes at any level (0..3; another is INVALID_ARGUMENT). The text reaches the host
 *  log, tagged with the object, when the event ends; above 16 KiB it is truncated. */
export function logBytes(level: i32, text: Uint8Array): i32 {
  return raw.log(level, text.dataStart, <usize>text.length);
}

export namespace log {
  export function debug(text: string): void {
    logBytes(Level.DEBUG, utf8(text));
  }
  export function info(text: string): void {
    logBytes(Level.INFO, utf8(text));
  }
  export function warn(text: string): void {
    logBytes(Level.WARN, utf8(text));
  }
  export function error(text: string): void {
    logBytes(Level.ERROR, utf8(text));
  }
}

/** Wall-clock milliseconds since the Unix epoch. */
export function nowMs(): i64 {
  return raw.now_ms();
}

/** Fills `buf` with cryptographically secure bytes (split into host calls of at most
 *  64 KiB); returns 0 or a negative status. */
export function randomFill(buf: Uint8Array): i32 {
  for (let off = 0; off < buf.length; off += 65536) {
    const n = min(buf.length - off, 65536);
    const st = raw.random_fill(buf.dataStart + <usize>off, <usize>n);
    if (st < 0) return st;
  }
  return 0;
}
