// kvtest in AssemblyScript: the conformance guest. It answers the routes of
// tests/fixtures/c/kvtest.c (the C SDK's test guest) with the same texts, through the
// AssemblyScript SDK, so that tests/conformance/ can run one spec against every language.
// See kvtest.c's header for the route list and the "status text" format
// ("-4 key_too_large <message>"). Not here: the hostile routes (/spin, /recurse, /grow),
// which test the host, not an SDK. The alarm handler follows the keys kvtest.c documents
// (__alarm_spin, __alarm_reset_in, __alarm_busy_ms, __alarm_fail, __alarm_chain) and records runs in
// "__alarm" and "__alarm_runs". The SQL and call routes (/sql, /call, /whoami, /caller) go
// through the SDK's Sql and Call classes.

import {
  Alarm, AlarmInfo, Bookmark, Call, CallRequest, DurableObject, Entry, Level, ListOptions, ObjectRef, Request,
  Response, Sql, SqlType, SqlValue, Status, Storage, sqlBlob, sqlFloat, sqlInt, sqlNull, sqlText, str,
  failEvent, lastError, lastErrorCallStatus, logBytes, nowMs, parseInt64, parsed,
  percentDecode, randomFill, register, statusName, utf8,
} from "../../../guest-sdk/assemblyscript/assembly";
import * as raw from "../../../guest-sdk/assemblyscript/assembly/raw";
export {
  dohost_abi_v1, dohost_fetch, dohost_init, dohost_alarm,
} from "../../../guest-sdk/assemblyscript/assembly/exports";

/** A byte string built from parts, joined once (big listings stay within memory). */
class Text {
  parts: Uint8Array[] = [];
  len: i32 = 0;

  put(b: Uint8Array): Text {
    this.parts.push(b);
    this.len += b.length;
    return this;
  }

  str(s: string): Text {
    return this.put(utf8(s));
  }

  int(v: i64): Text {
    return this.str(v.toString());
  }

  text(t: Text): Text {
    for (let i = 0; i < t.parts.length; i++) this.put(t.parts[i]);
    return this;
  }

  /** "<st>" or "<st> <name> <message>". */
  status(st: i32): Text {
    this.int(st);
    if (st >= 0) return this;
    const d = lastError();
    if (d !== null) return this.str(" " + d.name + " " + d.message);
    return this.str(" " + statusName(st) + " (last_error returned " + lastErrorCallStatus().toString() + ")");
  }

  bytes(): Uint8Array {
    const out = new Uint8Array(this.len);
    let at = 0;
    for (let i = 0; i < this.parts.length; i++) {
      out.set(this.parts[i], at);
      at += this.parts[i].length;
    }
    return out;
  }
}

function plain(status: i32, t: Text): Response {
  return Response.bytes(status, "text/plain", t.bytes());
}

function replyStatus(http: i32, st: i32): Response {
  return plain(http, new Text().status(st));
}

function intParam(req: Request, name: string, dflt: i64): i64 {
  return req.paramInt(name, dflt);
}

function keyParam(req: Request): Uint8Array {
  const k = req.param("key");
  return k !== null ? k : new Uint8Array(0);
}

/** A form body "a=1&b&c=3" as percent-decoded entries ("a&" is one entry). */
function parseForm(body: Uint8Array): Entry[] {
  const entries: Entry[] = [];
  let s = 0;
  while (s < body.length) {
    let amp = s;
    while (amp < body.length && body[amp] != 38) amp++; // '&'
    let eq = s;
    while (eq < amp && body[eq] != 61) eq++; // '='
    const value = eq < amp ? body.subarray(eq + 1, amp) : new Uint8Array(0);
    entries.push(new Entry(percentDecode(body.subarray(s, eq)), percentDecode(value)));
    s = amp + 1;
  }
  return entries;
}

function formKeys(body: Uint8Array): Uint8Array[] {
  const entries = parseForm(body);
  const keys = new Array<Uint8Array>(entries.length);
  for (let i = 0; i < entries.length; i++) keys[i] = entries[i].key;
  return keys;
}

function sameBytes(a: Uint8Array, b: Uint8Array): bool {
  return a.length == b.length && memory.compare(a.dataStart, b.dataStart, <usize>a.length) == 0;
}

function replyGetMany(keys: Uint8Array[]): Response {
  const values = Storage.getMany(keys);
  if (values === null) return replyStatus(200, Storage.status);
  let found = 0; // the host's count: distinct keys found
  for (let i = 0; i < keys.length; i++) {
    if (values[i] === null) continue;
    let seen = false;
    for (let j = 0; j < i; j++) if (sameBytes(keys[j], keys[i])) seen = true;
    if (!seen) found++;
  }
  const t = new Text().int(found).str("\n");
  for (let i = 0; i < keys.length; i++) {
    const v = values[i];
    if (v === null) continue;
    t.put(keys[i]).str("=").put(v).str("\n");
  }
  return plain(200, t);
}

function routeMany(req: Request): Response {
  const n = intParam(req, "n", 0);
  const op = req.paramString("op");
  if (n < 0 || n > 100000 || op === null) return Response.text(400, "need op= and 0 <= n <= 100000\n");
  const keys = new Array<Uint8Array>(<i32>n);
  const entries = new Array<Entry>(<i32>n);
  const v = utf8("v");
  for (let i = 0; i < <i32>n; i++) {
    keys[i] = utf8("k" + i.toString());
    entries[i] = new Entry(keys[i], v);
  }
  if (op == "put") return replyStatus(200, Storage.putMany(entries));
  if (op == "delete") return replyStatus(200, Storage.deleteMany(keys));
  return replyGetMany(keys);
}

function repeated(c: u8, n: i64): Uint8Array {
  const b = new Uint8Array(<i32>n);
  b.fill(c);
  return b;
}

function routeFill(req: Request): Response {
  const n = intParam(req, "n", 0);
  const vlen = intParam(req, "vlen", 1);
  const p = req.param("prefix");
  const prefix = p !== null ? p : new Uint8Array(0);
  if (n < 0 || n > 1000000 || vlen < 0 || vlen > 4 * 1024 * 1024) {
    return Response.text(400, "need 0 <= n <= 1e6 and 0 <= vlen <= 4 MiB\n");
  }
  const value = repeated(118, vlen); // 'v'
  const key = new Uint8Array(prefix.length + 6);
  key.set(prefix);
  for (let i: i64 = 0; i < n; i++) {
    let rest = i;
    for (let d = 5; d >= 0; d--) { // zero-padded so keys sort numerically
      key[prefix.length + d] = <u8>(48 + rest % 10);
      rest /= 10;
    }
    const st = Storage.put(key, value);
    if (st < 0) return replyStatus(200, st);
  }
  return replyStatus(200, 0);
}

function routeList(req: Request): Response {
  const o = new ListOptions();
  o.prefix = req.param("prefix");
  o.start = req.param("start");
  o.end = req.param("end");
  o.reverse = intParam(req, "reverse", 0) != 0;
  o.limit = <u32>intParam(req, "limit", 0);
  const it = Storage.list(o);
  const body = new Text();
  let count = 0;
  while (it.next()) {
    body.put(it.key).str("=").put(it.value).str("\n");
    count++;
  }
  if (it.status < 0) return replyStatus(200, it.status);
  return plain(200, new Text().int(count).str(" ").int(it.pages).str("\n").text(body));
}

function routePutBig(req: Request): Response {
  const klen = intParam(req, "klen", 0);
  const vlen = intParam(req, "vlen", 0);
  const most: i64 = 64 * 1024 * 1024;
  if (klen < 0 || vlen < 0 || klen > most || vlen > most) return Response.text(400, "need 0 <= klen, vlen <= 64 MiB\n");
  return replyStatus(200, Storage.put(repeated(107, klen), repeated(118, vlen)));
}

function routeGetBig(req: Request): Response {
  const klen = intParam(req, "klen", 0);
  if (klen < 0 || klen > 64 * 1024 * 1024) return Response.text(400, "need 0 <= klen <= 64 MiB\n");
  const v = Storage.get(repeated(107, klen));
  return replyStatus(200, v !== null ? v.length : Storage.status);
}

function routeRandom(req: Request, rawCall: bool): Response {
  const len = intParam(req, "len", 16);
  if (len < 0 || len > 64 * 1024 * 1024) return Response.text(400, "need 0 <= len <= 64 MiB\n");
  const buf = new Uint8Array(<i32>len);
  if (rawCall) return replyStatus(200, raw.random_fill(buf.dataStart, <usize>buf.length));
  const st = randomFill(buf);
  if (st < 0) return replyStatus(200, st);
  return Response.bytes(200, "application/octet-stream", buf);
}

function routeLastError(): Response {
  const d = lastError();
  if (d === null) return plain(200, new Text().int(lastErrorCallStatus()));
  return plain(200, new Text().str("0 " + d.code.toString() + " " + d.name + " " + d.message));
}

function routeEcho(req: Request): Response {
  const t = new Text().str("method=" + req.method + "\npath=" + req.path + "\nquery=").put(req.queryBytes);
  for (let i = 0; i < req.headers.length; i++) {
    t.str("\nheader:" + req.headers[i].name + "=" + req.headers[i].value);
  }
  return plain(200, t.str("\nbody_len=").int(req.body.length).str("\nbody=").put(req.body));
}

/** Sends `r` now; on a refusal answers 200 with the status text instead. */
function sendOrStatus(r: Response): Response | null {
  const st = r.send();
  return st < 0 ? replyStatus(200, st) : null;
}

function routeBigResponse(req: Request): Response | null {
  const len = intParam(req, "len", 0);
  if (len < 0 || len > 100 * 1024 * 1024) return Response.text(400, "need 0 <= len <= 100 MiB\n");
  return sendOrStatus(Response.bytes(200, "application/octet-stream", repeated(120, len))); // 'x'
}

/** The integer stored under `key` into `parsed`; false when absent or not an integer. */
function intKey(key: string): bool {
  const v = Storage.get(utf8(key));
  return v !== null && parseInt64(v);
}

/** A successful run's record: "__alarm" and one more line of "__alarm_runs". */
function recordAlarmRun(info: AlarmInfo): i32 {
  const t = info.scheduledMs.toString() + " " + info.retryCount.toString() + (info.isRetry ? " true" : " false");
  const st = Storage.put(utf8("__alarm"), utf8(t));
  if (st < 0) return st;
  const runs = Storage.get(utf8("__alarm_runs"));
  const all = new Text();
  if (runs !== null) all.put(runs);
  return Storage.put(utf8("__alarm_runs"), all.str(t + "\n").bytes());
}

let spins: u64 = 0;

function routeAlarmSet(req: Request, relative: bool): Response {
  const v = req.param("ms");
  if (v === null || !parseInt64(v)) return Response.text(400, "need ms=<integer>\n");
  return replyStatus(200, Alarm.set(relative ? nowMs() + parsed : parsed));
}

function routeAlarmGet(): Response {
  const at = Alarm.get();
  if (Alarm.status < 0) return replyStatus(200, Alarm.status);
  if (Alarm.status == 0) return Response.text(200, "none");
  return plain(200, new Text().int(at));
}

function replyBookmark(b: string | null): Response {
  return b !== null ? Response.text(200, b) : replyStatus(200, Bookmark.status);
}

function routeBookmarkForTime(req: Request): Response {
  const v = req.param("ms");
  if (v === null || !parseInt64(v)) return Response.text(400, "need ms=<integer>\n");
  return replyBookmark(Bookmark.forTime(parsed));
}

function routeBookmarkRestore(req: Request): Response | null {
  const st = Bookmark.restoreBytes(req.body);
  if (req.param("then_fail") !== null) {
    Storage.putText("fail", "1");
    return failEvent(1);
  }
  return replyStatus(200, st);
}

// ---- SQL and calls (formats in kvtest.c's header) -----------------------------------------

const HEX = "0123456789abcdef";

function hex(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += HEX.charAt(b[i] >> 4) + HEX.charAt(b[i] & 15);
  return s;
}

function hexDigit(c: u8): i32 {
  if (c >= 48 && c <= 57) return <i32>c - 48;
  if (c >= 97 && c <= 102) return <i32>c - 87;
  if (c >= 65 && c <= 70) return <i32>c - 55;
  return -1;
}

/** Hex digits to bytes; null on an odd length or a non-hex character. */
function parseHex(s: Uint8Array): Uint8Array | null {
  if (s.length % 2 != 0) return null;
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) {
    const hi = hexDigit(s[2 * i]);
    const lo = hexDigit(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return null;
    out[i] = <u8>((hi << 4) | lo);
  }
  return out;
}

/** One "p" query parameter: n, i:<decimal>, f:<16 hex digits of the bits>, t:<text>, b:<hex>. */
function parseValue(v: Uint8Array): SqlValue | null {
  if (v.length == 1 && v[0] == 110) return sqlNull(); // 'n'
  if (v.length < 2 || v[1] != 58) return null; // ':'
  const rest = v.subarray(2);
  const kind = v[0];
  if (kind == 105) return parseInt64(rest) ? sqlInt(parsed) : null; // 'i'
  if (kind == 102) { // 'f'
    const b = parseHex(rest);
    if (b === null || b.length != 8) return null;
    let bits: u64 = 0;
    for (let i = 0; i < 8; i++) bits = (bits << 8) | <u64>b[i];
    return sqlFloat(reinterpret<f64>(bits));
  }
  if (kind == 116) return sqlText(str(rest)); // 't'
  if (kind == 98) { // 'b'
    const b = parseHex(rest);
    return b !== null ? sqlBlob(b) : null;
  }
  return null;
}

/** Every "p" query parameter in order; null when one is malformed. */
function sqlParams(req: Request): SqlValue[] | null {
  const params: SqlValue[] = [];
  const q = req.queryBytes;
  let start = 0;
  while (start < q.length) {
    let amp = start;
    while (amp < q.length && q[amp] != 38) amp++; // '&'
    if (amp - start >= 2 && q[start] == 112 && q[start + 1] == 61) { // "p="
      const v = parseValue(percentDecode(q.subarray(start + 2, amp)));
      if (v === null) return null;
      params.push(v);
    }
    start = amp + 1;
  }
  return params;
}

function putValue(t: Text, v: SqlValue): void {
  if (v.type == SqlType.INT) t.str("i:").int(v.i);
  else if (v.type == SqlType.FLOAT) {
    const be = new Uint8Array(8);
    store<u64>(be.dataStart, bswap<u64>(reinterpret<u64>(v.f)));
    t.str("f:" + hex(be));
  } else if (v.type == SqlType.TEXT) t.str("t:" + v.text);
  else if (v.type == SqlType.BLOB) t.str("b:" + hex(v.blob));
  else t.str("n");
}

function routeSql(req: Request): Response {
  const params = sqlParams(req);
  if (params === null) return Response.text(400, "bad parameter\n");
  const res = Sql.exec(str(req.body), params);
  if (res === null) return replyStatus(200, Sql.status);
  const t = new Text().str("columns=" + res.columns.join(",") + "\n");
  for (let i = 0; i < res.rows.length; i++) {
    const row = res.rows[i];
    t.str("row=");
    for (let j = 0; j < row.length; j++) {
      if (j > 0) t.str(",");
      putValue(t, row[j]);
    }
    t.str("\n");
  }
  t.str("rows=").int(res.rows.length).str(" read=").int(<i64>res.rowsRead);
  return plain(200, t.str(" written=").int(<i64>res.rowsWritten));
}

function routeCall(req: Request): Response {
  const creq = new CallRequest().header("x-from", "kvtest").withBody(req.body);
  const method = req.paramString("method");
  if (method !== null) creq.method = method;
  const path = req.paramString("path");
  if (path !== null) creq.path = path;
  const query = req.paramString("query");
  if (query !== null) creq.query = query;
  const c = req.paramString("class");
  const cls = c !== null ? c : "";
  const id = req.paramString("id");
  const name = req.paramString("name");
  const r = id !== null ? Call.byId(cls, id, creq) : Call.byName(cls, name !== null ? name : "", creq);
  if (r === null) return replyStatus(200, Call.status);
  const t = new Text().str("status=").int(r.status);
  for (let i = 0; i < r.headers.length; i++) t.str("\nheader:" + r.headers[i].name + "=" + r.headers[i].value);
  return plain(200, t.str("\nbody_len=").int(r.body.length).str("\nbody=").put(r.body));
}

/** "<class> <id> <name or (none)>". */
function replyRef(r: ObjectRef): Response {
  const name = r.name;
  return plain(200, new Text().str(r.className + " " + r.id + " " + (name !== null ? name : "(none)")));
}

class KvTest extends DurableObject {
  initRuns: i32 = 0; // dohost_init calls of this instance
  alarmCalls: i32 = 0; // alarm handler entries of this instance

  init(): i32 {
    this.initRuns++;
    return 0;
  }

  alarm(info: AlarmInfo): i32 {
    this.alarmCalls++;
    if (Storage.get(utf8("__alarm_spin")) !== null) {
      while (true) spins++;
    }
    if (intKey("__alarm_reset_in")) {
      Alarm.set(nowMs() + parsed);
      return 1; // fails, yet its new alarm is kept and replaces the retry
    }
    if (intKey("__alarm_busy_ms")) {
      const until = nowMs() + parsed; // wall time, for the host's crash tests
      while (nowMs() < until) {}
    }
    if (intKey("__alarm_fail") && <i64>info.retryCount < parsed) return 1;
    const st = recordAlarmRun(info);
    if (st < 0) return st;
    if (intKey("__alarm_chain")) return Alarm.set(nowMs() + parsed) < 0 ? 1 : 0;
    return 0;
  }

  fetch(req: Request): Response | null {
    const p = req.path;
    if (p == "/get") {
      const v = Storage.get(keyParam(req));
      if (v !== null) return Response.bytes(200, "application/octet-stream", v);
      return replyStatus(Storage.status == Status.NOT_FOUND ? 404 : 400, Storage.status);
    }
    if (p == "/put") return replyStatus(200, Storage.put(keyParam(req), req.body));
    if (p == "/delete") return replyStatus(200, Storage.delete(keyParam(req)));
    if (p == "/put_many") return replyStatus(200, Storage.putMany(parseForm(req.body)));
    if (p == "/get_many") return replyGetMany(formKeys(req.body));
    if (p == "/delete_many") return replyStatus(200, Storage.deleteMany(formKeys(req.body)));
    if (p == "/many") return routeMany(req);
    if (p == "/fill") return routeFill(req);
    if (p == "/list") return routeList(req);
    if (p == "/delete_all") return replyStatus(200, Storage.deleteAll());
    if (p == "/put_then_trap") {
      Storage.putText("trap1", "1");
      Storage.putText("trap2", "1");
      Storage.putText("trap3", "1");
      unreachable();
    }
    if (p == "/put_big") return routePutBig(req);
    if (p == "/get_big") return routeGetBig(req);
    if (p == "/log") return replyStatus(200, logBytes(<i32>intParam(req, "level", Level.INFO), req.body));
    if (p == "/now") return plain(200, new Text().int(nowMs()));
    if (p == "/random") return routeRandom(req, false);
    if (p == "/random_raw") return routeRandom(req, true);
    if (p == "/last_error") return routeLastError();
    if (p == "/init_count") return plain(200, new Text().int(this.initRuns));
    if (p == "/echo") return routeEcho(req);
    if (p == "/status") return sendOrStatus(new Response(<i32>intParam(req, "code", 200)));
    if (p == "/big_response") return routeBigResponse(req);
    if (p == "/headers") {
      return Response.bytes(200, "text/plain", utf8("headers"))
        .header("x-one", "1")
        .header("x-dup", "a")
        .header("x-dup", "b")
        .header("connection", "close"); // hop-by-hop: the host drops it
    }
    if (p == "/twice") {
      const st = Response.text(200, "first").send();
      return st < 0 ? failEvent(st) : Response.text(200, "second");
    }
    if (p == "/no_response") return null;
    if (p == "/fail") {
      Storage.putText("fail", "1");
      Response.text(200, "this response must not be sent\n").send();
      return failEvent(<i32>intParam(req, "rc", 1));
    }
    if (p == "/alarm_set") return routeAlarmSet(req, false);
    if (p == "/alarm_in") return routeAlarmSet(req, true);
    if (p == "/alarm_get") return routeAlarmGet();
    if (p == "/alarm_delete") return replyStatus(200, Alarm.delete());
    if (p == "/alarm_calls") return plain(200, new Text().int(this.alarmCalls));
    if (p == "/put_then_alarm_then_trap") {
      Storage.putText("t", "1");
      Alarm.set(nowMs() + 1000);
      unreachable();
    }
    if (p == "/sql") return routeSql(req);
    if (p == "/call") return routeCall(req);
    if (p == "/whoami") {
      const r = Call.self();
      return r !== null ? replyRef(r) : replyStatus(200, Call.status);
    }
    if (p == "/bookmark_current") return replyBookmark(Bookmark.current());
    if (p == "/bookmark_for_time") return routeBookmarkForTime(req);
    if (p == "/bookmark_restore") return routeBookmarkRestore(req);
    if (p == "/caller") {
      const r = Call.caller(req);
      return r !== null ? replyRef(r) : plain(200, new Text().str("none"));
    }
    return Response.text(404, "no route\n");
  }
}

register(new KvTest());
