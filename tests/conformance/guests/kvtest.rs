//! kvtest in Rust: the conformance guest. It answers the routes of tests/fixtures/c/kvtest.c
//! (the C SDK's test guest) with the same texts, through the Rust SDK, so that
//! tests/conformance/ can run one spec against every language. See kvtest.c's header for
//! the route list and the "status text" format ("-4 key_too_large <message>").
//! Not here: the hostile routes (/spin, /recurse, /grow), which test the host, not an SDK.
//! The alarm handler follows the keys kvtest.c documents (__alarm_spin, __alarm_reset_in,
//! __alarm_busy_ms, __alarm_fail, __alarm_chain) and records runs in "__alarm" and "__alarm_runs".
//! The SQL and call routes (/sql, /call, /whoami, /caller) go through `dohost::sql` and
//! `dohost::call`.

use dohost::bookmark;
use dohost::call::{self, CallRequest, ObjectRef};
use dohost::sql::{self, Value};
use dohost::storage::{self, ListOptions};
use dohost::{
    alarm, last_error, parse_i64, raw, status_name, AlarmInfo, DurableObject, Error, Request,
    Response, Result,
};

/// "<st>" or "<st> <name> <message>".
fn status_text(st: i32) -> Vec<u8> {
    let mut t = st.to_string();
    if st < 0 {
        match last_error() {
            Ok(d) => {
                t.push(' ');
                t.push_str(&d.name);
                t.push(' ');
                t.push_str(&d.message);
            }
            Err(e) => {
                t.push(' ');
                t.push_str(status_name(st));
                t.push_str(&format!(" (last_error returned {})", e.code()));
            }
        }
    }
    t.into_bytes()
}

fn plain(status: u16, body: Vec<u8>) -> Result<Response> {
    Ok(Response::bytes(status, "text/plain", body))
}

fn reply_status(http: u16, st: i32) -> Result<Response> {
    plain(http, status_text(st))
}

/// The status of a call: its count (or 0), or its error code.
fn status_of<T: Into<i64>>(r: Result<T>) -> i32 {
    match r {
        Ok(v) => v.into() as i32,
        Err(e) => e.code(),
    }
}

fn unit(r: Result<()>) -> i32 {
    status_of(r.map(|_| 0i32))
}

fn int_param(req: &Request, name: &str, dflt: i64) -> i64 {
    req.query_param(name).and_then(|v| parse_i64(&v)).unwrap_or(dflt)
}

fn key_param(req: &Request) -> Vec<u8> {
    req.query_param("key").unwrap_or_default()
}

/// A form body "a=1&b&c=3" as percent-decoded (key, value) pairs.
fn parse_form(body: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    if body.is_empty() {
        return Vec::new();
    }
    let mut parts: Vec<&[u8]> = body.split(|&c| c == b'&').collect();
    if body.ends_with(b"&") {
        parts.pop(); // "a&" is one entry, as in the C guest
    }
    parts
        .into_iter()
        .map(|part| match part.iter().position(|&c| c == b'=') {
            Some(i) => (dohost::percent_decode(&part[..i]), dohost::percent_decode(&part[i + 1..])),
            None => (dohost::percent_decode(part), Vec::new()),
        })
        .collect()
}

fn form_keys(req: &Request) -> Vec<Vec<u8>> {
    parse_form(&req.body).into_iter().map(|(k, _)| k).collect()
}

fn reply_get_many(keys: &[Vec<u8>]) -> Result<Response> {
    let values = match storage::get_many(keys) {
        Ok(v) => v,
        Err(e) => return reply_status(200, e.code()),
    };
    // The host's count: distinct keys found.
    let mut found: Vec<&[u8]> = Vec::new();
    for (k, v) in keys.iter().zip(&values) {
        if v.is_some() && !found.contains(&k.as_slice()) {
            found.push(k);
        }
    }
    let mut t = format!("{}\n", found.len()).into_bytes();
    for (k, v) in keys.iter().zip(&values) {
        if let Some(v) = v {
            t.extend_from_slice(k);
            t.push(b'=');
            t.extend_from_slice(v);
            t.push(b'\n');
        }
    }
    plain(200, t)
}

fn route_many(req: &Request) -> Result<Response> {
    let n = int_param(req, "n", 0);
    let op = match req.query_param("op") {
        Some(op) if (0..=100_000).contains(&n) => op,
        _ => return Ok(Response::text(400, "need op= and 0 <= n <= 100000\n")),
    };
    let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("k{}", i).into_bytes()).collect();
    match op.as_slice() {
        b"put" => {
            let entries: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (k.as_slice(), &b"v"[..])).collect();
            reply_status(200, unit(storage::put_many(&entries)))
        }
        b"delete" => reply_status(200, status_of(storage::delete_many(&keys))),
        _ => reply_get_many(&keys),
    }
}

fn route_fill(req: &Request) -> Result<Response> {
    let n = int_param(req, "n", 0);
    let vlen = int_param(req, "vlen", 1);
    let prefix = req.query_param("prefix").unwrap_or_default();
    if !(0..=1_000_000).contains(&n) || !(0..=4 * 1024 * 1024).contains(&vlen) {
        return Ok(Response::text(400, "need 0 <= n <= 1e6 and 0 <= vlen <= 4 MiB\n"));
    }
    let value = vec![b'v'; vlen as usize];
    let mut key = prefix.clone();
    key.extend_from_slice(b"000000");
    let at = prefix.len();
    for i in 0..n {
        let mut rest = i;
        for d in (0..6).rev() {
            key[at + d] = b'0' + (rest % 10) as u8; // zero-padded so keys sort numerically
            rest /= 10;
        }
        if let Err(e) = storage::put(&key, &value) {
            return reply_status(200, e.code());
        }
    }
    reply_status(200, 0)
}

fn route_list(req: &Request) -> Result<Response> {
    let opts = ListOptions {
        prefix: req.query_param("prefix"),
        start: req.query_param("start"),
        end: req.query_param("end"),
        reverse: int_param(req, "reverse", 0) != 0,
        limit: int_param(req, "limit", 0) as u32,
    };
    let mut list = match storage::list(opts) {
        Ok(l) => l,
        Err(e) => return reply_status(200, e.code()),
    };
    let mut body = Vec::new();
    let mut count = 0;
    for entry in &mut list {
        let (k, v) = match entry {
            Ok(kv) => kv,
            Err(e) => return reply_status(200, e.code()),
        };
        body.extend_from_slice(&k);
        body.push(b'=');
        body.extend_from_slice(&v);
        body.push(b'\n');
        count += 1;
    }
    let mut t = format!("{} {}\n", count, list.pages()).into_bytes();
    t.extend_from_slice(&body);
    plain(200, t)
}

fn route_put_big(req: &Request) -> Result<Response> {
    let (klen, vlen) = (int_param(req, "klen", 0), int_param(req, "vlen", 0));
    let max = 64 * 1024 * 1024;
    if !(0..=max).contains(&klen) || !(0..=max).contains(&vlen) {
        return Ok(Response::text(400, "need 0 <= klen, vlen <= 64 MiB\n"));
    }
    let (key, value) = (vec![b'k'; klen as usize], vec![b'v'; vlen as usize]);
    reply_status(200, unit(storage::put(&key, &value)))
}

fn route_get_big(req: &Request) -> Result<Response> {
    let klen = int_param(req, "klen", 0);
    if !(0..=64 * 1024 * 1024).contains(&klen) {
        return Ok(Response::text(400, "need 0 <= klen <= 64 MiB\n"));
    }
    let st = match storage::get(&vec![b'k'; klen as usize]) {
        Ok(Some(v)) => v.len() as i32,
        Ok(None) => Error::NOT_FOUND.code(),
        Err(e) => e.code(),
    };
    reply_status(200, st)
}

fn route_random(req: &Request, raw_call: bool) -> Result<Response> {
    let len = int_param(req, "len", 16);
    if !(0..=64 * 1024 * 1024).contains(&len) {
        return Ok(Response::text(400, "need 0 <= len <= 64 MiB\n"));
    }
    let mut buf = vec![0u8; len as usize];
    if raw_call {
        return reply_status(200, unsafe { raw::random_fill(buf.as_mut_ptr(), buf.len()) });
    }
    match dohost::random_fill(&mut buf) {
        Ok(()) => Ok(Response::bytes(200, "application/octet-stream", buf)),
        Err(e) => reply_status(200, e.code()),
    }
}

fn route_last_error() -> Result<Response> {
    let t = match last_error() {
        Ok(d) => format!("0 {} {} {}", d.code, d.name, d.message),
        Err(e) => e.code().to_string(),
    };
    plain(200, t.into_bytes())
}

fn route_echo(req: &Request) -> Result<Response> {
    let mut t = format!("method={}\npath={}\nquery={}", req.method, req.path, req.query);
    for (name, value) in &req.headers {
        t.push_str(&format!("\nheader:{}={}", name, value));
    }
    t.push_str(&format!("\nbody_len={}\nbody=", req.body.len()));
    let mut body = t.into_bytes();
    body.extend_from_slice(&req.body);
    plain(200, body)
}

/// Sends `resp` now; on a refusal answers 200 with the status text instead.
fn send_or_status(resp: Response) -> Result<Response> {
    match resp.send() {
        Ok(()) => Ok(Response::none()),
        Err(e) => reply_status(200, e.code()),
    }
}

fn route_big_response(req: &Request) -> Result<Response> {
    let len = int_param(req, "len", 0);
    if !(0..=100 * 1024 * 1024).contains(&len) {
        return Ok(Response::text(400, "need 0 <= len <= 100 MiB\n"));
    }
    send_or_status(Response::bytes(200, "application/octet-stream", vec![b'x'; len as usize]))
}

fn route_alarm_set(req: &Request, relative: bool) -> Result<Response> {
    let ms = match req.query_param("ms").and_then(|v| parse_i64(&v)) {
        Some(ms) => ms,
        None => return Ok(Response::text(400, "need ms=<integer>\n")),
    };
    let at = if relative { dohost::now_ms() + ms } else { ms };
    reply_status(200, unit(alarm::set(at)))
}

fn reply_bookmark(r: Result<String>) -> Result<Response> {
    match r {
        Ok(b) => plain(200, b.into_bytes()),
        Err(e) => reply_status(200, e.code()),
    }
}

fn route_bookmark_for_time(req: &Request) -> Result<Response> {
    match req.query_param("ms").and_then(|v| parse_i64(&v)) {
        Some(ms) => reply_bookmark(bookmark::for_time(ms)),
        None => Ok(Response::text(400, "need ms=<integer>\n")),
    }
}

fn route_bookmark_restore(req: &Request) -> Result<Response> {
    let st = unit(bookmark::restore(&req.body));
    if req.query_param("then_fail").is_some() {
        let _ = storage::put(b"fail", b"1");
        return Err(Error::from_code(1));
    }
    reply_status(200, st)
}

fn route_alarm_get() -> Result<Response> {
    match alarm::get() {
        Ok(None) => Ok(Response::text(200, "none")),
        Ok(Some(at)) => plain(200, at.to_string().into_bytes()),
        Err(e) => reply_status(200, e.code()),
    }
}

/// The integer stored under `key`, if any.
fn int_key(key: &[u8]) -> Option<i64> {
    storage::get(key).ok().flatten().and_then(|v| parse_i64(&v))
}

/// A successful run's record: "__alarm" and one more line of "__alarm_runs".
fn record_alarm_run(info: &AlarmInfo) -> Result<()> {
    let t = format!("{} {} {}", info.scheduled_ms, info.retry_count, info.is_retry);
    storage::put(b"__alarm", t.as_bytes())?;
    let mut all = storage::get(b"__alarm_runs").ok().flatten().unwrap_or_default();
    all.extend_from_slice(t.as_bytes());
    all.push(b'\n');
    storage::put(b"__alarm_runs", &all)
}

// ---- SQL and calls (formats in kvtest.c's header) ----------------------------------------

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{:02x}", b)).collect()
}

fn parse_hex(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

/// One "p" query parameter: n, i:<decimal>, f:<16 hex digits of the bits>, t:<text>, b:<hex>.
fn parse_value(v: &[u8]) -> Option<Value> {
    if v == b"n" {
        return Some(Value::Null);
    }
    if v.len() < 2 || v[1] != b':' {
        return None;
    }
    let rest = &v[2..];
    match v[0] {
        b'i' => parse_i64(rest).map(Value::Int),
        b'f' => {
            let bits = u64::from_str_radix(std::str::from_utf8(rest).ok()?, 16).ok()?;
            Some(Value::Float(f64::from_bits(bits)))
        }
        b't' => Some(Value::Text(String::from_utf8(rest.to_vec()).ok()?)),
        b'b' => parse_hex(rest).map(Value::Blob),
        _ => None,
    }
}

/// Every "p" query parameter in order; `None` when one is malformed.
fn sql_params(req: &Request) -> Option<Vec<Value>> {
    req.query
        .split('&')
        .filter_map(|part| part.strip_prefix("p="))
        .map(|v| parse_value(&dohost::percent_decode(v.as_bytes())))
        .collect()
}

fn put_value(t: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => t.extend_from_slice(b"n"),
        Value::Int(i) => t.extend_from_slice(format!("i:{}", i).as_bytes()),
        Value::Float(f) => t.extend_from_slice(format!("f:{}", hex(&f.to_bits().to_be_bytes())).as_bytes()),
        Value::Text(s) => {
            t.extend_from_slice(b"t:");
            t.extend_from_slice(s.as_bytes());
        }
        Value::Blob(b) => t.extend_from_slice(format!("b:{}", hex(b)).as_bytes()),
    }
}

fn route_sql(req: &Request) -> Result<Response> {
    let params = match sql_params(req) {
        Some(p) => p,
        None => return Ok(Response::text(400, "bad parameter\n")),
    };
    let statement = String::from_utf8_lossy(&req.body);
    let res = match sql::exec(&statement, &params) {
        Ok(r) => r,
        Err(e) => return reply_status(200, e.code()),
    };
    let mut t = format!("columns={}\n", res.columns.join(",")).into_bytes();
    for row in &res.rows {
        t.extend_from_slice(b"row=");
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                t.push(b',');
            }
            put_value(&mut t, v);
        }
        t.push(b'\n');
    }
    let counts = format!("rows={} read={} written={}", res.rows.len(), res.rows_read, res.rows_written);
    t.extend_from_slice(counts.as_bytes());
    plain(200, t)
}

fn route_call(req: &Request) -> Result<Response> {
    let text = |name: &str| req.query_str(name);
    let mut creq = CallRequest::default().header("x-from", "kvtest").body(req.body.clone());
    if let Some(m) = text("method") {
        creq.method = m;
    }
    if let Some(p) = text("path") {
        creq.path = p;
    }
    if let Some(q) = text("query") {
        creq.query = q;
    }
    let class = text("class").unwrap_or_default();
    let result = match text("id") {
        Some(id) => call::by_id(&class, &id, &creq),
        None => call::by_name(&class, &text("name").unwrap_or_default(), &creq),
    };
    let resp = match result {
        Ok(r) => r,
        Err(e) => return reply_status(200, e.code()),
    };
    let mut t = format!("status={}", resp.status);
    for (name, value) in &resp.headers {
        t.push_str(&format!("\nheader:{}={}", name, value));
    }
    t.push_str(&format!("\nbody_len={}\nbody=", resp.body.len()));
    let mut body = t.into_bytes();
    body.extend_from_slice(&resp.body);
    plain(200, body)
}

/// "<class> <id> <name or (none)>".
fn reply_ref(r: &ObjectRef) -> Result<Response> {
    let name = r.name.as_deref().unwrap_or("(none)");
    plain(200, format!("{} {} {}", r.class, r.id, name).into_bytes())
}

fn spin() -> ! {
    static mut SPINS: u64 = 0;
    loop {
        unsafe { core::ptr::write_volatile(&mut SPINS, SPINS.wrapping_add(1)) };
    }
}

#[derive(Default)]
struct KvTest {
    init_runs: u32,   // dohost_init calls of this instance
    alarm_calls: u32, // alarm handler entries of this instance
}

impl DurableObject for KvTest {
    fn init(&mut self) -> Result<()> {
        self.init_runs += 1;
        Ok(())
    }

    fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        let fail = Err(Error::from_code(1)); // returns 1: its writes are rolled back
        self.alarm_calls += 1;
        if storage::get(b"__alarm_spin").ok().flatten().is_some() {
            spin();
        }
        if let Some(n) = int_key(b"__alarm_reset_in") {
            let _ = alarm::set(dohost::now_ms() + n);
            return fail; // fails, yet its new alarm is kept and replaces the retry
        }
        if let Some(n) = int_key(b"__alarm_busy_ms") {
            let until = dohost::now_ms() + n; // wall time, for the host's crash tests
            while dohost::now_ms() < until {}
        }
        if let Some(n) = int_key(b"__alarm_fail") {
            if (info.retry_count as i64) < n {
                return fail;
            }
        }
        record_alarm_run(&info)?;
        if let Some(n) = int_key(b"__alarm_chain") {
            if alarm::set(dohost::now_ms() + n).is_err() {
                return fail;
            }
        }
        Ok(())
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match req.path.as_str() {
            "/get" => match storage::get(&key_param(&req)) {
                Ok(Some(v)) => Ok(Response::bytes(200, "application/octet-stream", v)),
                Ok(None) => reply_status(404, Error::NOT_FOUND.code()),
                Err(e) => reply_status(400, e.code()),
            },
            "/put" => reply_status(200, unit(storage::put(&key_param(&req), &req.body))),
            "/delete" => reply_status(200, status_of(storage::delete(&key_param(&req)).map(|b| b as i32))),
            "/put_many" => reply_status(200, unit(storage::put_many(&parse_form(&req.body)))),
            "/get_many" => reply_get_many(&form_keys(&req)),
            "/delete_many" => reply_status(200, status_of(storage::delete_many(&form_keys(&req)))),
            "/many" => route_many(&req),
            "/fill" => route_fill(&req),
            "/list" => route_list(&req),
            "/delete_all" => reply_status(200, unit(storage::delete_all())),
            "/put_then_trap" => {
                for k in [&b"trap1"[..], b"trap2", b"trap3"] {
                    let _ = storage::put(k, b"1");
                }
                core::arch::wasm32::unreachable()
            }
            "/put_big" => route_put_big(&req),
            "/get_big" => route_get_big(&req),
            "/log" => {
                let level = int_param(&req, "level", dohost::log::INFO as i64) as i32;
                reply_status(200, unit(dohost::log::write(level, &req.body)))
            }
            "/now" => plain(200, dohost::now_ms().to_string().into_bytes()),
            "/random" => route_random(&req, false),
            "/random_raw" => route_random(&req, true),
            "/last_error" => route_last_error(),
            "/init_count" => plain(200, self.init_runs.to_string().into_bytes()),
            "/echo" => route_echo(&req),
            "/status" => send_or_status(Response::new(int_param(&req, "code", 200) as u16)),
            "/big_response" => route_big_response(&req),
            "/headers" => Ok(Response::bytes(200, "text/plain", "headers")
                .header("x-one", "1")
                .header("x-dup", "a")
                .header("x-dup", "b")
                .header("connection", "close")), // hop-by-hop: the host drops it
            "/twice" => {
                Response::text(200, "first").send()?;
                Ok(Response::text(200, "second"))
            }
            "/no_response" => Ok(Response::none()),
            "/fail" => {
                let _ = storage::put(b"fail", b"1");
                Response::text(200, "this response must not be sent\n").send()?;
                Err(Error::from_code(int_param(&req, "rc", 1) as i32))
            }
            "/alarm_set" => route_alarm_set(&req, false),
            "/alarm_in" => route_alarm_set(&req, true),
            "/alarm_get" => route_alarm_get(),
            "/alarm_delete" => reply_status(200, unit(alarm::delete())),
            "/alarm_calls" => plain(200, self.alarm_calls.to_string().into_bytes()),
            "/put_then_alarm_then_trap" => {
                let _ = storage::put(b"t", b"1");
                let _ = alarm::set(dohost::now_ms() + 1000);
                core::arch::wasm32::unreachable()
            }
            "/sql" => route_sql(&req),
            "/call" => route_call(&req),
            "/whoami" => match call::object_info() {
                Ok(r) => reply_ref(&r),
                Err(e) => reply_status(200, e.code()),
            },
            "/bookmark_current" => reply_bookmark(bookmark::current()),
            "/bookmark_for_time" => route_bookmark_for_time(&req),
            "/bookmark_restore" => route_bookmark_restore(&req),
            "/caller" => match req.caller() {
                Some(r) => reply_ref(&r),
                None => plain(200, b"none".to_vec()),
            },
            _ => Ok(Response::text(404, "no route\n")),
        }
    }
}

dohost::export_object!(KvTest, init, alarm);
