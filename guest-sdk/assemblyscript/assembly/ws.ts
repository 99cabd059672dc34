// WebSockets (abi/README.md section 5 "WebSockets", abi/websocket.cddl).
//
// The host owns the connections, not the activation: the instance may be dropped while
// clients stay connected (hibernation), and the next message re-creates it (init() runs
// again) with its connections, their tags and attachments intact. So keep nothing about a
// connection in fields: put it in its tags (fixed at accept) or its attachment.
//
// Accept in fetch, override the handlers, and re-export their exports from the entry file:
//
//   class Room extends DurableObject {
//     fetch(req: Request): Response | null {
//       if (!WebSocket.isUpgrade(req)) return Response.text(426, "use a WebSocket\n");
//       const id = WebSocket.accept(["member"]); // the event's answer is the 101 handshake
//       return id < 0 ? failEvent(id) : null;
//     }
//     webSocketMessage(msg: WsMessage): i32 {
//       const n = WebSocket.sendTag("member", msg.data, msg.kind);
//       return n < 0 ? n : 0;
//     }
//   }
//   export { dohost_ws_message } from "<sdk>/assembly/exports"; // + dohost_ws_close, dohost_ws_error
//
// Re-exporting dohost_ws_message is what lets a module accept at all (accept() returns
// Status.NOT_SUPPORTED without it). Each message, close and error is an ordinary event:
// its own transaction; a non-zero return fails it (writes rolled back, sends dropped, the
// connection stays open). Sends, closes and attachment changes are output: they take
// effect once the event's writes are durable.
//
// Calls return a status (>= 0 success, < 0 a Status code, also kept in WebSocket.status);
// reads return null on failure. lastError() gives the host's message.

import * as raw from "./raw";
import { Decoder, Encoder, CborType } from "./cbor";
import { Request } from "./http";
import { SCRATCH, outputStatus, takeOutput } from "./output";
import { Status } from "./status";
import { utf8 } from "./bytes";

/** A message's frame type. */
export namespace WsKind {
  /** UTF-8 text (the host refuses other bytes with BAD_ENCODING). */
  export const TEXT: i32 = 0;
  export const BINARY: i32 = 1;
}

/** Limits the host enforces (abi/README.md), named here for callers. */
export namespace WsLimits {
  export const MAX_TAGS: i32 = 10;
  export const MAX_TAG_BYTES: i32 = 256;
  export const MAX_ATTACHMENT_BYTES: i32 = 16 * 1024;
  export const MAX_AUTO_RESPONSE_BYTES: i32 = 1024;
  export const MAX_REASON_BYTES: i32 = 123;
}

function hasTag(tags: string[], tag: string): bool {
  for (let i = 0; i < tags.length; i++) if (tags[i] == tag) return true;
  return false;
}

/** One open connection (ws-info). */
export class WsInfo {
  id: u32 = 0;
  tags: string[] = [];
  /** When the host last answered it with the auto-response (ms since the Unix epoch), or
   *  -1 when never. */
  autoResponseAt: i64 = -1;

  hasTag(tag: string): bool {
    return hasTag(this.tags, tag);
  }
}

/** A message arrived on one of the object's connections (DurableObject.webSocketMessage). */
export class WsMessage {
  id: u32 = 0;
  /** The connection's tags, as accepted. */
  tags: string[] = [];
  /** WsKind.TEXT or WsKind.BINARY. */
  kind: i32 = WsKind.BINARY;
  /** The payload (a text message's UTF-8 bytes). */
  data: Uint8Array = new Uint8Array(0);

  get isText(): bool {
    return this.kind == WsKind.TEXT;
  }

  /** The payload as text (for a text message). */
  get text(): string {
    return String.UTF8.decodeUnsafe(this.data.dataStart, <usize>this.data.length);
  }

  hasTag(tag: string): bool {
    return hasTag(this.tags, tag);
  }
}

/** A connection the client ended, or that failed (after its WsError)
 *  (DurableObject.webSocketClose). Not delivered for connections the object closed. */
export class WsClose {
  id: u32 = 0;
  tags: string[] = [];
  /** The client's code; 1005 when its close frame had none; 1006 without a close frame. */
  code: i32 = 1005;
  reason: string = "";
  /** True when the client sent a close frame (the closing handshake ran). */
  clean: bool = false;

  hasTag(tag: string): bool {
    return hasTag(this.tags, tag);
  }
}

/** A connection failed: a protocol violation, a message above the limit, the client
 *  vanished (DurableObject.webSocketError). Its WsClose (clean: false) follows. */
export class WsError {
  id: u32 = 0;
  tags: string[] = [];
  message: string = "";

  hasTag(tag: string): bool {
    return hasTag(this.tags, tag);
  }
}

export class WebSocket {
  /** The status of the last call: >= 0 success, < 0 a Status code. */
  static status: i32 = 0;

  /** True when the request asks for a WebSocket upgrade (`upgrade: websocket`, any
   *  case). accept() still checks the rest of the handshake. */
  static isUpgrade(req: Request): bool {
    const v = req.header("upgrade");
    return v !== null && v.trim().toLowerCase() == "websocket";
  }

  /** Accepts this fetch event's WebSocket upgrade with up to 10 tags (each 1..256 bytes
   *  of UTF-8). Returns the connection's id (> 0) or a negative status: NOT_SUPPORTED (not
   *  an upgrade request from HTTP, or dohost_ws_message not exported), INVALID_ARGUMENT
   *  (tags, accepted twice), LIMIT_EXCEEDED (32,768 connections on the object),
   *  QUOTA_EXCEEDED (the tenant's connection quota). The event's answer becomes the 101
   *  handshake (a response returned afterwards is ignored: return null); the connection
   *  opens once the event succeeds and its writes are durable. */
  static accept(tags: string[] = []): i32 {
    const e = new Encoder(16 * tags.length + 8);
    e.array(tags.length);
    for (let i = 0; i < tags.length; i++) e.text(tags[i]);
    return (WebSocket.status = raw.ws_accept(e.dataStart, <usize>e.length));
  }

  /** Sends one message to a connection; 0 or a negative status: NOT_FOUND (not open),
   *  BAD_ENCODING (text that is not UTF-8), VALUE_TOO_LARGE (above the 1 MiB limit). */
  static send(id: u32, data: Uint8Array, kind: i32 = WsKind.BINARY): i32 {
    return (WebSocket.status = raw.ws_send(id, kind, data.dataStart, <usize>data.length));
  }

  static sendText(id: u32, text: string): i32 {
    return WebSocket.send(id, utf8(text), WsKind.TEXT);
  }

  static sendBinary(id: u32, data: Uint8Array): i32 {
    return WebSocket.send(id, data, WsKind.BINARY);
  }

  /** Sends one message to every open connection with `tag` (every open connection when
   *  null); returns how many it went to, or a negative status. "" is INVALID_ARGUMENT (the
   *  ABI reads an empty tag as "all"). */
  static sendTag(tag: string | null, data: Uint8Array, kind: i32 = WsKind.BINARY): i32 {
    if (tag !== null && tag.length == 0) return (WebSocket.status = Status.INVALID_ARGUMENT);
    const t = utf8(tag !== null ? tag : "");
    return (WebSocket.status = raw.ws_send_tag(t.dataStart, <usize>t.length, kind,
                                               data.dataStart, <usize>data.length));
  }

  /** sendTag with a text message. */
  static sendTagText(tag: string | null, text: string): i32 {
    return WebSocket.sendTag(tag, utf8(text), WsKind.TEXT);
  }

  /** Sends one message to every open connection; returns how many it went to. */
  static broadcast(data: Uint8Array, kind: i32 = WsKind.BINARY): i32 {
    return WebSocket.sendTag(null, data, kind);
  }

  static broadcastText(text: string): i32 {
    return WebSocket.sendTag(null, utf8(text), WsKind.TEXT);
  }

  /** Closes a connection with `code` (1000 or 3000..4999) and a reason of at most 123
   *  bytes; 0 or a negative status. The object gets no close event for it. */
  static close(id: u32, code: i32 = 1000, reason: string = ""): i32 {
    const r = utf8(reason);
    return (WebSocket.status = raw.ws_close(id, code, r.dataStart, <usize>r.length));
  }

  /** Sets a connection's attachment (at most 16 KiB; empty removes it); 0 or a negative
   *  status. The host keeps it with the connection across hibernation; the change is kept
   *  only if the event succeeds. */
  static setAttachment(id: u32, data: Uint8Array): i32 {
    return (WebSocket.status = raw.ws_attachment_set(id, data.dataStart, <usize>data.length));
  }

  /** A connection's attachment (empty when it has none), or null on failure (status). */
  static attachment(id: u32): Uint8Array | null {
    const out = takeOutput(SCRATCH, raw.ws_attachment_get(id, SCRATCH.dataStart, <usize>SCRATCH.length));
    WebSocket.status = outputStatus;
    return out;
  }

  /** Sets the object's auto-response: a text message equal to `request` (byte for byte)
   *  is answered with `response` by the host, without an event and without waking a
   *  hibernated object. Each at most 1 KiB; an empty request is INVALID_ARGUMENT (see
   *  clearAutoResponse). Kept with the object's connections: set it in init() so that it
   *  is back after a host restart. */
  static setAutoResponse(request: string, response: string): i32 {
    if (request.length == 0) return (WebSocket.status = Status.INVALID_ARGUMENT);
    const q = utf8(request);
    const r = utf8(response);
    return (WebSocket.status = raw.ws_auto_response(q.dataStart, <usize>q.length,
                                                    r.dataStart, <usize>r.length));
  }

  /** Removes the object's auto-response. */
  static clearAutoResponse(): i32 {
    return (WebSocket.status = raw.ws_auto_response(0, 0, 0, 0));
  }

  /** The object's open connections (only those with `tag`, when given) in the order they
   *  were accepted, or null on failure (status). Includes this event's own accepts and
   *  excludes its own closes. */
  static list(tag: string | null = null): WsInfo[] | null {
    if (tag !== null && tag.length == 0) {
      WebSocket.status = Status.INVALID_ARGUMENT;
      return null;
    }
    const t = utf8(tag !== null ? tag : "");
    const out = takeOutput(SCRATCH, raw.ws_list(t.dataStart, <usize>t.length,
                                                SCRATCH.dataStart, <usize>SCRATCH.length));
    WebSocket.status = outputStatus;
    if (out === null) return null;
    const d = new Decoder(out);
    const infos: WsInfo[] = [];
    const n = d.array();
    for (let i = 0; i < n && d.ok; i++) {
      const info = new WsInfo();
      const m = d.map();
      for (let j = 0; j < m && d.ok; j++) {
        d.readKey();
        if (d.is("id")) info.id = decodeId(d);
        else if (d.is("tags")) info.tags = decodeTags(d);
        else if (d.is("auto_response_at")) info.autoResponseAt = d.int();
        else d.skip();
      }
      if (info.id == 0) break; // not an id: fails below
      infos.push(info);
    }
    if (!d.done || infos.length != n) {
      WebSocket.status = Status.SDK_DECODE;
      return null;
    }
    return infos;
  }

  /** How many connections are open (with `tag`, when given), or a negative status. */
  static count(tag: string | null = null): i32 {
    const l = WebSocket.list(tag);
    return l !== null ? l.length : WebSocket.status;
  }
}

/** A connection id; 0 (never an id: the callers refuse it) when out of range. */
function decodeId(d: Decoder): u32 {
  const v = d.uint();
  return v <= 0xffffffff ? <u32>v : 0;
}

function decodeTags(d: Decoder): string[] {
  const tags: string[] = [];
  const n = d.array();
  for (let i = 0; i < n && d.ok; i++) tags.push(d.text());
  return tags;
}

// ---- Event inputs (used by object.ts) --------------------------------------------------

/** Decodes a ws-message; null when it is not one. */
export function decodeWsMessage(input: Uint8Array): WsMessage | null {
  const d = new Decoder(input);
  const m = new WsMessage();
  let haveData = false;
  const n = d.map();
  for (let i = 0; i < n && d.ok; i++) {
    d.readKey();
    if (d.is("id")) m.id = decodeId(d);
    else if (d.is("tags")) m.tags = decodeTags(d);
    else if (d.is("data")) {
      m.kind = d.peek() == CborType.Text ? WsKind.TEXT : WsKind.BINARY;
      m.data = m.kind == WsKind.TEXT ? d.textBytes() : d.bytes();
      haveData = true;
    } else d.skip();
  }
  return d.done && haveData && m.id != 0 ? m : null;
}

/** Decodes a ws-close; null when it is not one. */
export function decodeWsClose(input: Uint8Array): WsClose | null {
  const d = new Decoder(input);
  const c = new WsClose();
  const n = d.map();
  for (let i = 0; i < n && d.ok; i++) {
    d.readKey();
    if (d.is("id")) c.id = decodeId(d);
    else if (d.is("tags")) c.tags = decodeTags(d);
    else if (d.is("code")) c.code = <i32>d.uint();
    else if (d.is("reason")) c.reason = d.text();
    else if (d.is("clean")) c.clean = d.bool();
    else d.skip();
  }
  return d.done && c.id != 0 ? c : null;
}

/** Decodes a ws-error; null when it is not one. */
export function decodeWsError(input: Uint8Array): WsError | null {
  const d = new Decoder(input);
  const e = new WsError();
  const n = d.map();
  for (let i = 0; i < n && d.ok; i++) {
    d.readKey();
    if (d.is("id")) e.id = decodeId(d);
    else if (d.is("tags")) e.tags = decodeTags(d);
    else if (d.is("message")) e.message = d.text();
    else d.skip();
  }
  return d.done && e.id != 0 ? e : null;
}
