//! counter - the smallest useful durable object: one integer in storage, the same routes
//! as samples/counter (C). Values are decimal text (text/plain; charset=utf-8).
//!
//!   GET  /       -> the current value
//!   POST /incr   -> adds 1, or the integer in the body (may be negative); the new value
//!   POST /reset  -> sets it to 0; the new value

use dohost::{parse_i64, storage, DurableObject, Error, Request, Response, Result};

const KEY: &[u8] = b"count";

#[derive(Default)]
struct Counter;

fn load() -> Result<i64> {
    match storage::get(KEY)? {
        None => Ok(0),
        Some(v) => parse_i64(&v).ok_or(Error::BAD_ENCODING),
    }
}

fn store(value: i64) -> Result<Response> {
    let text = value.to_string();
    storage::put(KEY, text.as_bytes())?;
    Ok(Response::text(200, text))
}

fn method_not_allowed(allow: &str) -> Response {
    Response::text(405, "method not allowed\n").header("allow", allow)
}

impl DurableObject for Counter {
    fn fetch(&mut self, req: Request) -> Result<Response> {
        match (req.path.as_str(), req.method.as_str()) {
            ("/", "GET") => Ok(Response::text(200, load()?.to_string())),
            ("/", _) => Ok(method_not_allowed("GET")),
            ("/incr", "POST") => {
                let delta = if req.body.is_empty() { Some(1) } else { parse_i64(&req.body) };
                let delta = match delta {
                    Some(d) => d,
                    None => return Ok(Response::text(400, "body must be an integer\n")),
                };
                match load()?.checked_add(delta) {
                    Some(v) => store(v),
                    None => Ok(Response::text(400, "counter would overflow\n")),
                }
            }
            ("/reset", "POST") => store(0),
            ("/incr", _) | ("/reset", _) => Ok(method_not_allowed("POST")),
            _ => Ok(Response::text(404, "not found\n")),
        }
    }
}

dohost::export_object!(Counter);
