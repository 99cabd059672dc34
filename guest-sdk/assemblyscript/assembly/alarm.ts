// The object's one alarm (abi/README.md, "Alarms"): a time in ms since the Unix epoch at
// which the host calls DurableObject.alarm() (re-export dohost_alarm from the entry file).
// Changes are part of the event's transaction; inside the alarm handler get() reports no
// alarm unless the handler set a new one.

import * as raw from "./raw";

const TIME = new Uint8Array(8);

export class Alarm {
  /** The status of the last call: 0 (or 1 for a get that found an alarm), or < 0. */
  static status: i32 = 0;

  /** Sets (replaces) the alarm; a time in the past fires at once. Returns 0, or a negative
   *  status (INVALID_ARGUMENT for a negative time). */
  static set(timeMs: i64): i32 {
    return (Alarm.status = raw.alarm_set(timeMs));
  }

  /** Sets the alarm `ms` milliseconds from now. */
  static setIn(ms: i64): i32 {
    return Alarm.set(raw.now_ms() + ms);
  }

  /** The alarm's time, or -1 when none is set or on error (then `status` < 0). */
  static get(): i64 {
    Alarm.status = raw.alarm_get(TIME.dataStart);
    return Alarm.status == 1 ? load<i64>(TIME.dataStart) : -1; // wasm is little-endian
  }

  /** Deletes the alarm (no error when none is set); returns 0 or a negative status. */
  static delete(): i32 {
    return (Alarm.status = raw.alarm_delete());
  }
}
