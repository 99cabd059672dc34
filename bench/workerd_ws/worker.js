// bench/ws_fanout.py --workerd: the chat room's WebSocket part as a workerd Durable Object
// with the hibernation API, doing what samples/chat-room does per message: a time that
// only grows, one stored message (JSON) plus the last time, then the JSON to every member.
import { DurableObject } from "cloudflare:workers";

export class Room extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    // Answered by the runtime without waking the object, like dohost's ws_auto_response.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
  }

  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname.endsWith("/ws")) {
      if (request.headers.get("upgrade") !== "websocket") return new Response("connect with a WebSocket", { status: 426 });
      const pair = new WebSocketPair();
      this.ctx.acceptWebSocket(pair[1], ["member"]);
      pair[1].serializeAttachment(String(Date.now()));
      return new Response(null, { status: 101, webSocket: pair[0] });
    }
    if (url.pathname.endsWith("/stats")) {
      return Response.json({ members: this.ctx.getWebSockets("member").length });
    }
    return new Response("not found", { status: 404 });
  }

  async webSocketMessage(ws, text) {
    let msg;
    try { msg = JSON.parse(text); } catch { ws.send(JSON.stringify({ error: "body must be JSON" })); return; }
    const last = (await this.ctx.storage.get("meta:last")) || 0;
    const time = Math.max(Date.now(), last + 1);
    const json = JSON.stringify({ author: String(msg.author), text: String(msg.text), time });
    await this.ctx.storage.put({ ["msg:" + String(time).padStart(13, "0")]: json, "meta:last": time });
    for (const member of this.ctx.getWebSockets("member")) member.send(json);
  }

  async webSocketClose(ws, code, reason, wasClean) {}
}

// "/<room>/..." -> the object idFromName(room)
export default {
  async fetch(request, env) {
    const room = new URL(request.url).pathname.split("/")[1] || "lobby";
    return env.ROOM.get(env.ROOM.idFromName(room)).fetch(request);
  },
};
