// wstest in AssemblyScript: the WebSocket test guest tests/fixtures/c/wstest.c written with
// the AssemblyScript SDK's WebSocket class, the same routes and text protocol as
// wstest.zig (without "twice" and "hostile", which test the host's argument checks rather
// than an SDK), so that tests/conformance/test_ws_conformance.py can hold every SDK to the
// same transcript.
//
// init counts constructor runs in "inits" and sets the auto-response "ping" -> "pong".
//   GET /ws?tags=a,b&att=X&hello=T&fail=1&close=1   accept (see wstest.c)
//   GET /other -> 403 "nope";  GET /log -> "<closes>|<errors>";  GET /inits -> N
// Text messages: echo:X, bcast:T:X, list, list:T, att:X, getatt, inits, close:CODE, fail.
// Binary messages are echoed.

import {
  DurableObject, Request, Response, Status, Storage, WebSocket, WsClose, WsError, WsMessage,
  failEvent, lastError, parseInt64, parsed, register, str,
} from "../../../guest-sdk/assemblyscript/assembly";
export {
  dohost_abi_v1, dohost_fetch, dohost_init, dohost_ws_message, dohost_ws_close, dohost_ws_error,
} from "../../../guest-sdk/assemblyscript/assembly/exports";

// Storage failures: a read sets `failure`, the handler then fails the event with it.
let failure: i32 = 0;

function getInt(key: string): i64 {
  const v = Storage.getText(key);
  if (v === null) {
    if (Storage.status != Status.NOT_FOUND) failure = Storage.status;
    return 0;
  }
  return I64.parseInt(v);
}

function stored(key: string): string {
  const v = Storage.getText(key);
  if (v === null && Storage.status != Status.NOT_FOUND) failure = Storage.status;
  return v !== null ? v : "";
}

function append(key: string, text: string): i32 {
  const old = stored(key);
  return failure < 0 ? failure : Storage.putText(key, old + text);
}

/** A status as a handler's return value: 0 for success. */
function rc(st: i32): i32 {
  return st < 0 ? st : 0;
}

class WsTest extends DurableObject {
  init(): i32 {
    failure = 0;
    const n = getInt("inits");
    if (failure < 0) return failure;
    const st = Storage.putText("inits", (n + 1).toString());
    if (st < 0) return st;
    return rc(WebSocket.setAutoResponse("ping", "pong"));
  }

  fetch(req: Request): Response | null {
    failure = 0;
    if (req.path == "/other") return Response.text(403, "nope");
    if (req.path == "/inits") {
      const n = getInt("inits");
      return failure < 0 ? failEvent(failure) : Response.text(200, n.toString());
    }
    if (req.path == "/log") {
      const text = stored("closes") + "|" + stored("errors");
      return failure < 0 ? failEvent(failure) : Response.text(200, text);
    }
    const q = req.paramString("tags");
    const tags = q !== null && q.length > 0 ? q.split(",") : new Array<string>(0);
    const id = WebSocket.accept(tags);
    if (id < 0) {
      let t = id.toString();
      const d = lastError();
      if (d !== null) t += " " + d.name + " " + d.message;
      return Response.text(426, t);
    }
    const att = req.param("att");
    if (att !== null && WebSocket.setAttachment(id, att) < 0) return failEvent(WebSocket.status);
    const hello = req.paramString("hello");
    if (hello !== null && WebSocket.sendText(id, hello) < 0) return failEvent(WebSocket.status);
    if (req.param("close") !== null && WebSocket.close(id, 4000, "bye") < 0) {
      return failEvent(WebSocket.status);
    }
    if (req.param("fail") !== null) return failEvent(1);
    return null; // the answer is the 101 handshake
  }

  webSocketMessage(m: WsMessage): i32 {
    if (!m.isText) return rc(WebSocket.sendBinary(m.id, m.data));
    failure = 0;
    const p = m.text;
    let out = "";
    if (p.startsWith("echo:")) {
      out = p.substring(5);
    } else if (p.startsWith("bcast:")) {
      const rest = p.substring(6);
      const colon = rest.indexOf(":");
      if (colon < 0) return 5;
      const tag = rest.substring(0, colon);
      const sent = WebSocket.sendTagText(tag.length > 0 ? tag : null, rest.substring(colon + 1));
      if (sent < 0) return sent;
      out = "sent " + sent.toString();
    } else if (p.startsWith("list")) {
      const infos = WebSocket.list(p.length > 5 ? p.substring(5) : null);
      if (infos === null) return WebSocket.status;
      for (let i = 0; i < infos.length; i++) {
        out += infos[i].id.toString() + "[" + infos[i].tags.join(",") + "]";
        if (infos[i].autoResponseAt >= 0) out += "@auto";
        out += ";";
      }
    } else if (p.startsWith("att:")) {
      out = WebSocket.setAttachment(m.id, m.data.subarray(4)) < 0 ? "err" : "ok";
    } else if (p.startsWith("getatt")) {
      const att = WebSocket.attachment(m.id);
      if (att === null) return WebSocket.status;
      out = "att=" + str(att);
    } else if (p.startsWith("inits")) {
      const n = getInt("inits");
      if (failure < 0) return failure;
      out = "inits=" + n.toString();
    } else if (p.startsWith("close:")) {
      let code: i64 = parseInt64(m.data.subarray(6)) ? parsed : 0;
      if (code < 0 || code > 0xffff) code = 0;
      const st = WebSocket.close(m.id, <i32>code, "by object");
      if (st >= 0) return 0;
      out = st.toString();
    } else if (p.startsWith("fail")) {
      const st = WebSocket.sendText(m.id, "lost");
      if (st < 0) return st;
      const put = Storage.putText("failed_write", "1");
      return put < 0 ? put : 1;
    } else {
      out = "?";
    }
    return rc(WebSocket.sendText(m.id, out));
  }

  webSocketClose(c: WsClose): i32 {
    failure = 0;
    const clean = c.clean ? "clean" : "unclean";
    return rc(append("closes", c.id.toString() + " " + c.code.toString() + " " + c.reason + " " + clean + ";"));
  }

  webSocketError(e: WsError): i32 {
    failure = 0;
    return rc(append("errors", e.id.toString() + " " + e.message + ";"));
  }
}

register(new WsTest());
