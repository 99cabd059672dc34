//! wstest in Rust: the WebSocket test guest tests/fixtures/c/wstest.c written with the Rust
//! SDK's `dohost::ws`, the same routes and text protocol as wstest.zig (without "twice" and
//! "hostile", which test the host's argument checks rather than an SDK), so that
//! tests/conformance/test_ws_conformance.py can hold every SDK to the same transcript.
//!
//! init counts constructor runs in "inits" and sets the auto-response "ping" -> "pong".
//!   GET /ws?tags=a,b&att=X&hello=T&fail=1&close=1   accept (see wstest.c)
//!   GET /other -> 403 "nope";  GET /log -> "<closes>|<errors>";  GET /inits -> N
//! Text messages: echo:X, bcast:T:X, list, list:T, att:X, getatt, inits, close:CODE, fail.
//! Binary messages are echoed.

use dohost::ws::{self, Data, Kind};
use dohost::{last_error, parse_i64, storage, DurableObject, Error, Request, Response, Result};

fn get_int(key: &str) -> Result<i64> {
    Ok(storage::get(key.as_bytes())?.and_then(|v| parse_i64(&v)).unwrap_or(0))
}

fn put_int(key: &str, n: i64) -> Result<()> {
    storage::put(key.as_bytes(), n.to_string().as_bytes())
}

fn append(key: &str, text: &str) -> Result<()> {
    let mut all = storage::get(key.as_bytes())?.unwrap_or_default();
    all.extend_from_slice(text.as_bytes());
    storage::put(key.as_bytes(), &all)
}

/// The text of a stored key, "" when missing.
fn stored(key: &str) -> Result<String> {
    let v = storage::get(key.as_bytes())?.unwrap_or_default();
    Ok(String::from_utf8_lossy(&v).into_owned())
}

#[derive(Default)]
struct WsTest;

impl DurableObject for WsTest {
    fn init(&mut self) -> Result<()> {
        put_int("inits", get_int("inits")? + 1)?;
        ws::set_auto_response("ping", "pong")
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match req.path.as_str() {
            "/other" => return Ok(Response::text(403, "nope")),
            "/inits" => return Ok(Response::text(200, get_int("inits")?.to_string())),
            "/log" => return Ok(Response::text(200, stored("closes")? + "|" + &stored("errors")?)),
            _ => {}
        }
        let q = req.query_str("tags").unwrap_or_default();
        let tags: Vec<&str> = if q.is_empty() { Vec::new() } else { q.split(',').collect() };
        let id = match ws::accept(&tags) {
            Ok(id) => id,
            Err(e) => {
                let mut t = e.code().to_string();
                if let Ok(d) = last_error() {
                    t = t + " " + &d.name + " " + &d.message;
                }
                return Ok(Response::text(426, t));
            }
        };
        if let Some(att) = req.query_param("att") {
            ws::set_attachment(id, &att)?;
        }
        if let Some(hello) = req.query_str("hello") {
            ws::send_text(id, &hello)?;
        }
        if req.query_param("close").is_some() {
            ws::close(id, 4000, "bye")?;
        }
        if req.query_param("fail").is_some() {
            return Err(Error::from_code(1));
        }
        Ok(Response::none())
    }

    fn websocket_message(&mut self, m: ws::Message) -> Result<()> {
        let p = match &m.data {
            Data::Binary(b) => return ws::send_binary(m.id, b),
            Data::Text(t) => t.as_str(),
        };
        let out = if let Some(x) = p.strip_prefix("echo:") {
            x.to_string()
        } else if let Some(rest) = p.strip_prefix("bcast:") {
            let colon = rest.find(':').ok_or(Error::from_code(5))?;
            let tag = &rest[..colon];
            let tag = if tag.is_empty() { None } else { Some(tag) };
            let sent = ws::send_tag(tag, Kind::Text, rest[colon + 1..].as_bytes())?;
            format!("sent {}", sent)
        } else if p.starts_with("list") {
            let tag = if p.len() > 5 { Some(&p[5..]) } else { None };
            let mut t = String::new();
            for info in ws::list(tag)? {
                t += &format!("{}[{}]", info.id, info.tags.join(","));
                if info.auto_response_at.is_some() {
                    t += "@auto";
                }
                t += ";";
            }
            t
        } else if let Some(att) = p.strip_prefix("att:") {
            match ws::set_attachment(m.id, att.as_bytes()) {
                Ok(()) => "ok".into(),
                Err(_) => "err".into(),
            }
        } else if p.starts_with("getatt") {
            let att = ws::attachment(m.id)?.unwrap_or_default();
            "att=".to_string() + &String::from_utf8_lossy(&att)
        } else if p.starts_with("inits") {
            format!("inits={}", get_int("inits")?)
        } else if let Some(code) = p.strip_prefix("close:") {
            let code = parse_i64(code.as_bytes()).and_then(|c| u16::try_from(c).ok()).unwrap_or(0);
            match ws::close(m.id, code, "by object") {
                Ok(()) => return Ok(()),
                Err(e) => e.code().to_string(),
            }
        } else if p.starts_with("fail") {
            ws::send_text(m.id, "lost")?;
            put_int("failed_write", 1)?;
            return Err(Error::from_code(1));
        } else {
            "?".into()
        };
        ws::send_text(m.id, &out)
    }

    fn websocket_close(&mut self, c: ws::Close) -> Result<()> {
        let clean = if c.clean { "clean" } else { "unclean" };
        append("closes", &format!("{} {} {} {};", c.id, c.code, c.reason, clean))
    }

    fn websocket_error(&mut self, e: ws::Failure) -> Result<()> {
        append("errors", &format!("{} {};", e.id, e.message))
    }
}

dohost::export_object!(WsTest, init, websocket_message, websocket_close, websocket_error);
