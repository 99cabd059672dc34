//! Requests (abi/request.cddl) and responses (abi/response.cddl).

use crate::cbor::{Decoder, Encoder};
use crate::{check, raw, Error, Result};

/// The request of a fetch event. Header names are lower case; duplicates are kept in
/// arrival order.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// Begins with "/"; percent-encoding kept.
    pub path: String,
    /// The raw query string without "?"; "" when absent.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub(crate) fn decode(input: &[u8]) -> Result<Request> {
        let mut d = Decoder::new(input);
        let mut req = Request::default();
        for _ in 0..d.map()? {
            match d.text()? {
                "method" => req.method = d.text()?.into(),
                "path" => req.path = d.text()?.into(),
                "query" => req.query = d.text()?.into(),
                "headers" => {
                    let n = d.array()?;
                    req.headers.reserve(n);
                    for _ in 0..n {
                        if d.array()? != 2 {
                            return Err(Error::SDK_DECODE);
                        }
                        let name = d.text()?.into();
                        req.headers.push((name, d.text()?.into()));
                    }
                }
                "body" => req.body = d.bytes()?.to_vec(),
                _ => d.skip()?, // request.cddl: ignore keys we do not know
            }
        }
        if !d.done() {
            return Err(Error::SDK_DECODE);
        }
        Ok(req)
    }

    /// True when both the method and the path match.
    pub fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter `name`, percent-decoded ('+' is a space). A parameter
    /// given without a value ("?a" or "?a=") is `Some` and empty.
    pub fn query_param(&self, name: &str) -> Option<Vec<u8>> {
        for part in self.query.split('&') {
            let (k, v) = match part.find('=') {
                Some(i) => (&part[..i], &part[i + 1..]),
                None => (part, ""),
            };
            if k == name {
                return Some(percent_decode(v.as_bytes()));
            }
        }
        None
    }

    /// `query_param` as text (invalid UTF-8 replaced).
    pub fn query_str(&self, name: &str) -> Option<String> {
        self.query_param(name).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// `query_param` parsed as a decimal integer (see `parse_i64`).
    pub fn query_i64(&self, name: &str) -> Option<i64> {
        self.query_param(name).and_then(|v| crate::parse_i64(&v))
    }

    /// The body as UTF-8 text, if it is.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes %XX escapes and '+' (a space). A stray '%' stays as it is.
pub fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if s[i] == b'+' { b' ' } else { s[i] });
        i += 1;
    }
    out
}

/// A response to send. Build one with the constructors, add headers with `header`:
///
/// ```ignore
/// Ok(Response::text(200, "hello\n").header("cache-control", "no-store"))
/// ```
#[derive(Debug, Clone)]
pub struct Response {
    /// 100..=599 (the host refuses others with `bad_encoding`).
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    send: bool,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: Vec::new(), send: true }
    }

    /// text/plain; charset=utf-8
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::bytes(status, "text/plain; charset=utf-8", body.into().into_bytes())
    }

    /// application/json (the body is sent as given).
    pub fn json(status: u16, body: impl Into<String>) -> Response {
        Response::bytes(status, "application/json", body.into().into_bytes())
    }

    /// A body with a content type.
    pub fn bytes(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        let mut r = Response::new(status);
        r.headers.push(("content-type".into(), content_type.into()));
        r.body = body.into();
        r
    }

    /// Returned from `fetch`: set no response. The last one sent with `send`/`respond`
    /// stands, or, if none was, the host answers 204 No Content.
    pub fn none() -> Response {
        Response { send: false, ..Response::new(204) }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn should_send(&self) -> bool {
        self.send
    }

    fn encode(&self) -> Vec<u8> {
        let extra: usize = self.headers.iter().map(|(n, v)| n.len() + v.len() + 10).sum();
        let mut e = Encoder::with_capacity(self.body.len() + extra + 40);
        e.map(3).text("status").uint(self.status as u64);
        e.text("headers").array(self.headers.len());
        for (n, v) in &self.headers {
            e.array(2).text(n).text(v);
        }
        e.text("body").bytes(&self.body);
        e.finish()
    }

    /// Sets this as the event's response now (the last one set wins). `fetch` does this
    /// with the response it returns; call it yourself to handle a refusal (a status out of
    /// range is `bad_encoding`, a body above the host's limit `value_too_large`).
    pub fn send(&self) -> Result<()> {
        let buf = self.encode();
        check(unsafe { raw::response_set(buf.as_ptr(), buf.len()) }).map(|_| ())
    }
}

/// `response.send()`.
pub fn respond(response: &Response) -> Result<()> {
    response.send()
}
