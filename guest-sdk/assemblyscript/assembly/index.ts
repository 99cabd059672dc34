// AssemblyScript guest SDK for dohost, guest ABI v1 (abi/README.md).
//
//   import { DurableObject, Request, Response, register } from "<sdk>/assembly";
//   export { dohost_abi_v1, dohost_fetch } from "<sdk>/assembly/exports";
//
//   class Hello extends DurableObject {
//     fetch(req: Request): Response | null {
//       return Response.text(200, "hello from " + req.path + "\n");
//     }
//   }
//   register(new Hello());
//
// Beyond Storage, Alarm and log: Call (other objects of the tenant, Call.caller(req)), Sql
// (SQL on a class deployed with storage="sqlite") and WebSocket (ws.ts: connections the
// host keeps across hibernation) and Bookmark (point-in-time recovery of the object's storage). Calls that can fail return a status or null, with the status kept
// (Storage.status, Call.status, Sql.status, WebSocket.status) and the host's
// message in lastError().
//
// Build: asc app.ts -O3 --runtime minimal --use abort= -o app.wasm (see guest-sdk/README.md).

export { Encoder, Decoder, CborType } from "./cbor";
export { utf8, str, bytesEqual, concat, parseInt64, parsed, percentDecode } from "./bytes";
export { Status, statusName, ErrorDetail, lastError, lastErrorCallStatus } from "./status";
export { Header, Request, Response } from "./http";
export { Entry, ListOptions, ListIterator, Storage } from "./storage";
export { Level, log, logBytes, nowMs, randomFill } from "./util";
export { Alarm } from "./alarm";
export { Bookmark } from "./bookmark";
export { Sql, SqlResult, SqlType, SqlValue, sqlNull, sqlInt, sqlFloat, sqlText, sqlBlob } from "./sql";
export { Call, CallRequest, CallResponse, ObjectRef } from "./call";
export { WebSocket, WsClose, WsError, WsInfo, WsKind, WsLimits, WsMessage } from "./ws";
export { AlarmInfo, DurableObject, register, failEvent } from "./object";
export { SCRATCH } from "./output";
