// The module's exports. Re-export from your entry file the ones you need:
//
//   export { dohost_abi_v1, dohost_fetch } from "<sdk>/assembly/exports";
//   export { dohost_init } from "<sdk>/assembly/exports";   // if you override init()
//   export { dohost_alarm } from "<sdk>/assembly/exports";  // if you override alarm()
//   export { dohost_ws_message } from "<sdk>/assembly/exports"; // to accept WebSockets
//   export { dohost_ws_close, dohost_ws_error } from "<sdk>/assembly/exports"; // if overridden
//
// A function not re-exported is not compiled: a module without WebSockets carries none
// of their code.

import { runAlarm, runFetch, runInit, runWsClose, runWsError, runWsMessage } from "./object";

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

export function dohost_ws_message(input_len: i32): i32 {
  return runWsMessage(input_len);
}

export function dohost_ws_close(input_len: i32): i32 {
  return runWsClose(input_len);
}

export function dohost_ws_error(input_len: i32): i32 {
  return runWsError(input_len);
}
