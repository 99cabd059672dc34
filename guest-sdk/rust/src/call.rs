//! Calls to other objects (abi/README.md, section 5 "Object calls"; abi/call.cddl).
//!
//! ```ignore
//! use dohost::call::{self, CallRequest};
//!
//! let resp = call::by_name("pipeline", "build-main",
//!     &CallRequest::new("POST", "/runs/7/finished").body(b"{}".to_vec()))?;
//! if resp.status >= 500 { /* the callee failed: resp.body is a JSON error */ }
//! ```
//!
//! A call sends a fetch-shaped request to another object of the same tenant (any of its
//! classes, by name or by id) and returns that object's response. What to know:
//! - A call is a commit point: the event's writes so far are committed, and durable,
//!   before the call leaves; writes after it form a new transaction.
//! - The callee runs its own event with its own limits. If it traps or runs out of CPU
//!   time the call still succeeds: a 500 response with the JSON body
//!   `{"error": {"code": "object_error" | "cpu_limit", "message": ...}}`.
//! - `Err` means the call could not be made: `Error::CALL_CYCLE` (the target is already
//!   waiting in this call chain, e.g. A -> B -> A or A calling itself; the message names
//!   the chain), `CALL_DEPTH` (more than 16 calls deep), `CALL_FAILED` (no such class in
//!   this tenant, an id of another class or a forged one, the host shutting down),
//!   `BAD_ENCODING` (a path not beginning with "/", an invalid header). `err.detail()`
//!   has the host's message.
//! - A callee learns who called from headers only the host sets: [`Request::caller`].
//!   [`object_info`] gives an object its own address, e.g. to pass on for a callback.

use crate::cbor::{Decoder, Encoder};
use crate::{raw, take_output, Error, Request, Result, SCRATCH};

/// The request to send (abi/request.cddl): `GET /` unless set. Header names reach the
/// callee in lower case.
#[derive(Debug, Clone)]
pub struct CallRequest {
    pub method: String,
    /// Must begin with "/".
    pub path: String,
    /// Without the "?".
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Default for CallRequest {
    fn default() -> CallRequest {
        CallRequest::new("GET", "/")
    }
}

impl CallRequest {
    pub fn new(method: &str, path: &str) -> CallRequest {
        CallRequest {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn query(mut self, query: &str) -> CallRequest {
        self.query = query.into();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> CallRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> CallRequest {
        self.body = body.into();
        self
    }

    fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(self.body.len() + self.path.len() + 64);
        e.map(5);
        e.text("method").text(&self.method);
        e.text("path").text(&self.path);
        e.text("query").text(&self.query);
        e.text("headers").array(self.headers.len());
        for (n, v) in &self.headers {
            e.array(2).text(n).text(v);
        }
        e.text("body").bytes(&self.body);
        e.finish()
    }
}

/// The callee's response, as it set it (hop-by-hop headers dropped; 204 when it set none).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CallResponse {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn decode(input: &[u8]) -> Result<CallResponse> {
        let mut d = Decoder::new(input);
        let mut r = CallResponse { status: 200, ..CallResponse::default() };
        for _ in 0..d.map()? {
            match d.text()? {
                "status" => r.status = u16::try_from(d.uint()?).map_err(|_| Error::SDK_DECODE)?,
                "headers" => {
                    let n = d.array()?;
                    r.headers.reserve(n);
                    for _ in 0..n {
                        if d.array()? != 2 {
                            return Err(Error::SDK_DECODE);
                        }
                        let name = d.text()?.into();
                        r.headers.push((name, d.text()?.into()));
                    }
                }
                "body" => r.body = d.bytes()?.to_vec(),
                _ => d.skip()?, // response.cddl may grow
            }
        }
        if !d.done() {
            return Err(Error::SDK_DECODE);
        }
        Ok(r)
    }
}

fn call(class: &str, key: &str, value: &str, req: &CallRequest) -> Result<CallResponse> {
    let mut t = Encoder::with_capacity(class.len() + value.len() + 24);
    t.map(2).text("class").text(class).text(key).text(value);
    let target = t.finish();
    let r = req.encode();
    let out = take_output(SCRATCH, |p, cap| unsafe {
        raw::call(target.as_ptr(), target.len(), r.as_ptr(), r.len(), p, cap)
    })?;
    CallResponse::decode(&out)
}

/// Calls the object named `name` of class `class` (of this tenant); the callee's
/// response, whatever its status.
pub fn by_name(class: &str, name: &str, req: &CallRequest) -> Result<CallResponse> {
    call(class, "name", name, req)
}

/// Calls the object with this id (64 hex characters, as the host prints it) of `class`.
pub fn by_id(class: &str, id: &str, req: &CallRequest) -> Result<CallResponse> {
    call(class, "id", id, req)
}

/// An object's address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectRef {
    pub class: String,
    /// 64 hex characters.
    pub id: String,
    /// `None` when the host does not know it (the object was addressed by id).
    pub name: Option<String>,
}

/// This object's own class, id and (when known) name.
pub fn object_info() -> Result<ObjectRef> {
    let out = take_output(SCRATCH, |p, cap| unsafe { raw::object_info(p, cap) })?;
    let mut d = Decoder::new(&out);
    let mut r = ObjectRef::default();
    for _ in 0..d.map()? {
        match d.text()? {
            "class" => r.class = d.text()?.into(),
            "id" => r.id = d.text()?.into(),
            "name" => r.name = Some(d.text()?.into()),
            _ => d.skip()?,
        }
    }
    if !d.done() {
        return Err(Error::SDK_DECODE);
    }
    Ok(r)
}

impl Request {
    /// Who called, when this fetch event is a call: from the headers dohost-caller-class,
    /// -id and -name, which only the host sets. `None` for a request that is not a call.
    pub fn caller(&self) -> Option<ObjectRef> {
        Some(ObjectRef {
            class: self.header("dohost-caller-class")?.into(),
            id: self.header("dohost-caller-id")?.into(),
            name: self.header("dohost-caller-name").map(Into::into),
        })
    }
}
