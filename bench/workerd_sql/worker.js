// bench/sql_http.py's workerd side: the same routes as bench/guests/sqlbench.c on dohost.
//
//   /<name>/insert?start=S&n=N  N single-row INSERTs (ids S..S+N-1) -> "N"
//   /<name>/select?n=N          the first N rows by id, as JSON [{"id","name","score"}, ...]
//   /<name>/count               the number of rows
//   /<name>/noop                "ok", no SQL (the floor the others are compared with)
//
// The insert loop is synchronous, so its statements share one implicit transaction, and
// the output gate holds the response until that transaction is durable.
import { DurableObject } from "cloudflare:workers";

const NAME = "a name of some length";

export class SqlBench extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS bench(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER)",
    );
  }

  async fetch(request) {
    const url = new URL(request.url);
    const op = url.pathname.split("/")[2] || "";
    const n = Number(url.searchParams.get("n") ?? 100);
    const sql = this.ctx.storage.sql;
    if (op === "insert") {
      const start = Number(url.searchParams.get("start") ?? 0);
      for (let i = start; i < start + n; i++) {
        sql.exec("INSERT INTO bench(id, name, score) VALUES (?, ?, ?)", i, NAME, i % 97);
      }
      return new Response(String(n));
    }
    if (op === "select") {
      const rows = sql.exec("SELECT id, name, score FROM bench ORDER BY id LIMIT ?", n).toArray();
      return new Response(JSON.stringify(rows), {
        headers: { "content-type": "application/json" },
      });
    }
    if (op === "noop") return new Response("ok");
    if (op === "count") {
      return new Response(String(sql.exec("SELECT count(*) AS n FROM bench").one().n));
    }
    return new Response("no route", { status: 404 });
  }
}

// "/<name>/<op>" -> the object idFromName(name)
export default {
  async fetch(request, env) {
    const name = new URL(request.url).pathname.split("/")[1] || "o";
    return env.SQLBENCH.get(env.SQLBENCH.idFromName(name)).fetch(request);
  },
};
