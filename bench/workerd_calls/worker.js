// bench/calls_micro.py's workerd side: Durable Object "a" calls "b" through a stub, the
// same work as tests/fixtures/c/calltest.c's /ping_many on dohost.
import { DurableObject } from "cloudflare:workers";

export class Obj extends DurableObject {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname.endsWith("/ping")) return new Response("pong");
    if (url.pathname.endsWith("/ping_many")) {
      const n = Number(url.searchParams.get("n") || 0);
      const b = this.env.OBJ.get(this.env.OBJ.idFromName("b"));
      for (let i = 0; i < n; i++) {
        const r = await b.fetch("http://do/b/ping");
        await r.text();
        if (r.status !== 200) return new Response("call failed", { status: 500 });
      }
      return new Response("ok");
    }
    return new Response("no route", { status: 404 });
  }
}

// "/<name>/<op>" -> the object idFromName(name)
export default {
  async fetch(request, env) {
    const name = new URL(request.url).pathname.split("/")[1] || "a";
    return env.OBJ.get(env.OBJ.idFromName(name)).fetch(request);
  },
};
