// The module's exports. Re-export from your entry file the ones you need:
//
//   export { dohost_abi_v1, dohost_fetch } from "<sdk>/assembly/exports";
//   export { dohost_init } from "<sdk>/assembly/exports";   // if you override init()
//   export { dohost_alarm } from "<sdk>/assembly/exports";  // if you override alarm()

import { runAlarm, runFetch, runInit } from "./object";

/** The ABI marker (abi/README.md section 1); never called. */
export function dohost_abi_v1(): void {}

export function dohost_fetch(request_len: i32): i32 {
  return runFetch(request_len);
}

export function dohost_init(): i32 {
  return runInit();
}

export function dohost_alarm(info_len: i32): i32 {
  return runAlarm(info_len);
}
