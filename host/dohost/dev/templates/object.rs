//! {{name}} - a durable object made by `dohost init`. One integer in storage:
//!
//!   GET  /       -> the count
//!   POST /incr   -> adds STEP and answers the new count (and logs a line)
//!
//! Each request is one event: its writes commit together before the response leaves.
//! The SDK is the Rust SDK of the installed dohost (`dohost sdk rust` prints where).

use dohost::{log, parse_i64, storage, DurableObject, Error, Request, Response, Result};

const KEY: &[u8] = b"count";
const STEP: i64 = 1;

#[derive(Default)]
struct Object;

fn load() -> Result<i64> {
    match storage::get(KEY)? {
        None => Ok(0),
        Some(v) => parse_i64(&v).ok_or(Error::BAD_ENCODING),
    }
}

impl DurableObject for Object {
    fn fetch(&mut self, req: Request) -> Result<Response> {
        match (req.path.as_str(), req.method.as_str()) {
            ("/", "GET") => Ok(Response::text(200, load()?.to_string())),
            ("/incr", "POST") => {
                let text = (load()? + STEP).to_string();
                storage::put(KEY, text.as_bytes())?;
                log::info("incremented");
                Ok(Response::text(200, text))
            }
            _ => Ok(Response::text(404, "not found\n")),
        }
    }
}

dohost::export_object!(Object);
