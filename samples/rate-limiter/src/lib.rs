//! rate-limiter - a token bucket per API key, written with the Rust SDK. Address one object
//! per key (the object's name is the key): every request for that key is served by the
//! same object, one at a time, so taking a token is never racy.
//!
//!   POST /take[?n=N]  -> 200 {"allowed":true,"remaining":R}
//!                     or 429 {"allowed":false,"remaining":R,"retry_after_ms":T}
//!                        (with Retry-After in seconds): takes N tokens (default 1)
//!   GET  /            -> {"tokens":F,"capacity":C,"refill_per_sec":S}: the bucket now
//!   GET  /config      -> {"capacity":C,"refill_per_sec":S}
//!   PUT  /config      body {"capacity":C,"refill_per_sec":S} (either may be left out)
//!
//! The bucket holds at most `capacity` tokens (default 10) and gains `refill_per_sec`
//! (default 1, fractions allowed) every second. Nothing runs between requests: the refill
//! is computed from the time elapsed (`now_ms`) when a request arrives. A new bucket
//! starts full (at the configured capacity); lowering the capacity of a used bucket caps
//! its tokens, raising it grants none. Storage: "config" (JSON) and "bucket"
//! ("<tokens> <updated_ms>").

use dohost::{storage, DurableObject, Error, Request, Response, Result};

const DEFAULT_CAPACITY: f64 = 10.0;
const DEFAULT_REFILL_PER_SEC: f64 = 1.0;
const MAX_CAPACITY: f64 = 1e9;

#[derive(Clone, Copy, PartialEq, Debug)]
struct Config {
    capacity: f64,
    refill_per_sec: f64,
}

#[derive(Clone, Copy, PartialEq, Debug)]
struct Bucket {
    tokens: f64,
    updated_ms: i64,
}

fn load_config() -> Result<Config> {
    let mut config = Config { capacity: DEFAULT_CAPACITY, refill_per_sec: DEFAULT_REFILL_PER_SEC };
    if let Some(v) = storage::get(b"config")? {
        let text = std::str::from_utf8(&v).map_err(|_| Error::BAD_ENCODING)?;
        for (name, value) in json::parse_flat_object(text).ok_or(Error::BAD_ENCODING)? {
            match name.as_str() {
                "capacity" => config.capacity = value,
                "refill_per_sec" => config.refill_per_sec = value,
                _ => {}
            }
        }
    }
    Ok(config)
}

fn config_json(c: &Config) -> String {
    format!("{{\"capacity\":{},\"refill_per_sec\":{}}}", c.capacity, c.refill_per_sec)
}

/// The bucket as of `now`: the stored one plus what refilled since, capped.
fn load_bucket(config: &Config, now: i64) -> Result<Bucket> {
    let stored = match storage::get(b"bucket")? {
        None => return Ok(Bucket { tokens: config.capacity, updated_ms: now }), // starts full
        Some(v) => v,
    };
    let text = std::str::from_utf8(&stored).map_err(|_| Error::BAD_ENCODING)?;
    let mut parts = text.split(' ');
    let tokens: f64 = parts.next().and_then(|t| t.parse().ok()).ok_or(Error::BAD_ENCODING)?;
    let updated: i64 = parts.next().and_then(|t| t.parse().ok()).ok_or(Error::BAD_ENCODING)?;
    let elapsed = (now - updated).max(0) as f64; // a clock that went back refills nothing
    let tokens = (tokens + elapsed * config.refill_per_sec / 1000.0).min(config.capacity);
    Ok(Bucket { tokens, updated_ms: now.max(updated) })
}

fn store_bucket(b: &Bucket) -> Result<()> {
    storage::put(b"bucket", format!("{} {}", b.tokens, b.updated_ms).as_bytes())
}

fn take(req: &Request) -> Result<Response> {
    let n = match req.query_param("n") {
        None => 1,
        Some(v) => match dohost::parse_i64(&v) {
            Some(n) if n >= 1 => n,
            _ => return Ok(Response::text(400, "n must be an integer >= 1\n")),
        },
    } as f64;
    let config = load_config()?;
    let now = dohost::now_ms();
    let mut bucket = load_bucket(&config, now)?;
    if bucket.tokens >= n {
        bucket.tokens -= n;
        store_bucket(&bucket)?;
        let body = format!("{{\"allowed\":true,\"remaining\":{}}}", bucket.tokens.floor());
        return Ok(Response::json(200, body));
    }
    store_bucket(&bucket)?; // keeps the refill computed so far
    if n > config.capacity {
        let body = format!("{{\"error\":\"n is above the bucket's capacity of {}\"}}", config.capacity);
        return Ok(Response::json(400, body));
    }
    let missing = n - bucket.tokens;
    // (less a nanosecond, so that float noise cannot add a millisecond)
    let retry_after_ms = (missing * 1000.0 / config.refill_per_sec - 1e-6).ceil().max(1.0) as i64;
    let body = format!(
        "{{\"allowed\":false,\"remaining\":{},\"retry_after_ms\":{}}}",
        bucket.tokens.floor(),
        retry_after_ms
    );
    let retry_after_s = ((retry_after_ms + 999) / 1000).to_string();
    Ok(Response::json(429, body).header("retry-after", &retry_after_s))
}

fn put_config(req: &Request) -> Result<Response> {
    let fields = match req.text().and_then(json::parse_flat_object) {
        Some(f) => f,
        None => return Ok(Response::text(400, "body must be a JSON object of numbers\n")),
    };
    let old = load_config()?;
    let mut config = old;
    for (name, value) in fields {
        match name.as_str() {
            "capacity" => config.capacity = value,
            "refill_per_sec" => config.refill_per_sec = value,
            _ => return Ok(Response::text(400, format!("unknown setting {:?}\n", name))),
        }
    }
    if !(config.capacity >= 1.0 && config.capacity <= MAX_CAPACITY && config.capacity.fract() == 0.0) {
        return Ok(Response::text(400, "capacity must be an integer from 1 to 1e9\n"));
    }
    if !(config.refill_per_sec > 0.0 && config.refill_per_sec <= MAX_CAPACITY) {
        return Ok(Response::text(400, "refill_per_sec must be above 0 and at most 1e9\n"));
    }
    // Settle a used bucket under the old rate, then cap it to the new capacity. (A bucket
    // never used stays unstored: it starts full at the new capacity.)
    if storage::get(b"bucket")?.is_some() {
        let mut bucket = load_bucket(&old, dohost::now_ms())?;
        bucket.tokens = bucket.tokens.min(config.capacity);
        store_bucket(&bucket)?;
    }
    let body = config_json(&config);
    storage::put(b"config", body.as_bytes())?;
    Ok(Response::json(200, body))
}

fn method_not_allowed(allow: &str) -> Response {
    Response::text(405, "method not allowed\n").header("allow", allow)
}

#[derive(Default)]
struct RateLimiter;

impl DurableObject for RateLimiter {
    fn fetch(&mut self, req: Request) -> Result<Response> {
        match (req.path.as_str(), req.method.as_str()) {
            ("/take", "POST") => take(&req),
            ("/take", _) => Ok(method_not_allowed("POST")),
            ("/config", "GET") => Ok(Response::json(200, config_json(&load_config()?))),
            ("/config", "PUT") => put_config(&req),
            ("/config", _) => Ok(method_not_allowed("GET, PUT")),
            ("/", "GET") => {
                let config = load_config()?;
                let bucket = load_bucket(&config, dohost::now_ms())?;
                let body = format!(
                    "{{\"tokens\":{},\"capacity\":{},\"refill_per_sec\":{}}}",
                    bucket.tokens, config.capacity, config.refill_per_sec
                );
                Ok(Response::json(200, body))
            }
            ("/", _) => Ok(method_not_allowed("GET")),
            _ => Ok(Response::text(404, "not found\n")),
        }
    }
}

dohost::export_object!(RateLimiter);

/// Just enough JSON for the config: one object whose values are numbers.
mod json {
    fn skip_ws(s: &[u8], mut i: usize) -> usize {
        while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        i
    }

    /// A string without escapes other than \" and \\ (config names need no more).
    fn string(s: &[u8], mut i: usize) -> Option<(String, usize)> {
        if s.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
        let mut out = Vec::new();
        loop {
            match *s.get(i)? {
                b'"' => return Some((String::from_utf8(out).ok()?, i + 1)),
                b'\\' => {
                    out.push(*s.get(i + 1).filter(|c| matches!(c, b'"' | b'\\'))?);
                    i += 2;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
    }

    fn number(s: &[u8], i: usize) -> Option<(f64, usize)> {
        let end = i + s[i..]
            .iter()
            .take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .count();
        let v: f64 = std::str::from_utf8(&s[i..end]).ok()?.parse().ok()?;
        if v.is_finite() {
            Some((v, end))
        } else {
            None
        }
    }

    /// `{"a": 1, "b": 2.5}` -> [("a", 1.0), ("b", 2.5)]; None for anything else.
    pub fn parse_flat_object(text: &str) -> Option<Vec<(String, f64)>> {
        let s = text.as_bytes();
        let mut out = Vec::new();
        let mut i = skip_ws(s, 0);
        if s.get(i) != Some(&b'{') {
            return None;
        }
        i = skip_ws(s, i + 1);
        if s.get(i) == Some(&b'}') {
            return (skip_ws(s, i + 1) == s.len()).then(|| out);
        }
        loop {
            let (name, j) = string(s, i)?;
            i = skip_ws(s, j);
            if s.get(i) != Some(&b':') {
                return None;
            }
            let (value, j) = number(s, skip_ws(s, i + 1))?;
            out.push((name, value));
            i = skip_ws(s, j);
            match s.get(i) {
                Some(b',') => i = skip_ws(s, i + 1),
                Some(b'}') => return (skip_ws(s, i + 1) == s.len()).then(|| out),
                _ => return None,
            }
        }
    }
}
