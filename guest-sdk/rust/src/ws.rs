//! WebSockets (abi/README.md section 5 "WebSockets", abi/websocket.cddl).
//!
//! The host owns the connections, not the activation: the instance may be dropped while
//! clients stay connected (hibernation), and the next message re-creates it (`init` runs
//! again) with its connections, their tags and attachments intact. So keep nothing about a
//! connection in `self`: put it in its tags (fixed at accept) or its attachment.
//!
//! Accept in `fetch`, implement the handlers, and name them in `export_object!`:
//!
//! ```ignore
//! use dohost::{ws, DurableObject, Request, Response, Result};
//!
//! impl DurableObject for Room {
//!     fn fetch(&mut self, req: Request) -> Result<Response> {
//!         if !ws::is_upgrade(&req) {
//!             return Ok(Response::text(426, "use a WebSocket\n"));
//!         }
//!         ws::accept(&["member"])?; // the event's answer is the 101 handshake
//!         Ok(Response::none())
//!     }
//!     fn websocket_message(&mut self, msg: ws::Message) -> Result<()> {
//!         ws::send_tag(Some("member"), msg.data.kind(), msg.data.as_bytes())?;
//!         Ok(())
//!     }
//! }
//!
//! dohost::export_object!(Room, websocket_message); // + websocket_close, websocket_error
//! ```
//!
//! Exporting `websocket_message` is what lets a module accept at all (`accept` is
//! `Err(Error::NOT_SUPPORTED)` without it). Each message, close and error is an ordinary
//! event: its own transaction; `Err` fails it (writes rolled back, sends dropped, the
//! connection stays open). Sends, closes and attachment changes are output: they take
//! effect once the event's writes are durable.

use crate::cbor::{Decoder, Encoder};
use crate::{check, raw, take_output, Error, Request, Result, SCRATCH};

/// A connection id, given by the host (1 ..= 2^31-1, never reused within a host process).
pub type ConnId = u32;

/// Limits the host enforces (abi/README.md), named here for callers.
pub const MAX_TAGS: usize = 10;
pub const MAX_TAG_BYTES: usize = 256;
pub const MAX_ATTACHMENT_BYTES: usize = 16 * 1024;
pub const MAX_AUTO_RESPONSE_BYTES: usize = 1024;
pub const MAX_REASON_BYTES: usize = 123;
/// The close code of a normal closure; an object may also send 3000..=4999.
pub const CLOSE_NORMAL: u16 = 1000;

/// The frame type of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 text (the host refuses other bytes with `BAD_ENCODING`).
    Text = 0,
    Binary = 1,
}

/// A received message's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Text(String),
    Binary(Vec<u8>),
}

impl Data {
    pub fn kind(&self) -> Kind {
        match self {
            Data::Text(_) => Kind::Text,
            Data::Binary(_) => Kind::Binary,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Data::Text(s) => s.as_bytes(),
            Data::Binary(b) => b,
        }
    }

    /// The text of a text message; `None` for a binary one.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Data::Text(s) => Some(s),
            Data::Binary(_) => None,
        }
    }
}

/// True when the request asks for a WebSocket upgrade (`upgrade: websocket`, any case).
/// `accept` still checks the rest of the handshake.
pub fn is_upgrade(req: &Request) -> bool {
    req.header("upgrade").map_or(false, |v| {
        v.trim_matches(|c| c == ' ' || c == '\t').eq_ignore_ascii_case("websocket")
    })
}

/// Accepts this fetch event's WebSocket upgrade with up to 10 tags (each 1..=256 bytes);
/// returns the connection's id. The event's answer becomes the 101 handshake (a response
/// returned or sent afterwards is ignored: return `Response::none()`); the connection opens
/// once the event succeeds and its writes are durable. Errors: `NOT_SUPPORTED` (not an
/// upgrade request from HTTP, or `websocket_message` not exported), `INVALID_ARGUMENT`
/// (tags, accepted twice), `LIMIT_EXCEEDED` (32,768 connections on the object),
/// `QUOTA_EXCEEDED` (the tenant's connection quota).
pub fn accept(tags: &[&str]) -> Result<ConnId> {
    let mut e = Encoder::with_capacity(tags.iter().map(|t| t.len() + 3).sum::<usize>() + 1);
    e.array(tags.len());
    for t in tags {
        e.text(t);
    }
    let buf = e.finish();
    check(unsafe { raw::ws_accept(buf.as_ptr(), buf.len()) })
}

/// Sends one message to a connection. `NOT_FOUND` when it is not open, `BAD_ENCODING` for
/// text that is not UTF-8, `VALUE_TOO_LARGE` above the host's message limit (1 MiB).
pub fn send(id: ConnId, kind: Kind, data: &[u8]) -> Result<()> {
    check(unsafe { raw::ws_send(id, kind as i32, data.as_ptr(), data.len()) })?;
    Ok(())
}

pub fn send_text(id: ConnId, text: &str) -> Result<()> {
    send(id, Kind::Text, text.as_bytes())
}

pub fn send_binary(id: ConnId, data: &[u8]) -> Result<()> {
    send(id, Kind::Binary, data)
}

/// Sends one message to every open connection with `tag` (every open connection when
/// `None`); returns how many it went to. `Some("")` is `INVALID_ARGUMENT` (the ABI reads
/// an empty tag as "all").
pub fn send_tag(tag: Option<&str>, kind: Kind, data: &[u8]) -> Result<u32> {
    let t = tag_arg(tag)?;
    check(unsafe { raw::ws_send_tag(t.as_ptr(), t.len(), kind as i32, data.as_ptr(), data.len()) })
}

/// Sends one message to every open connection; returns how many it went to.
pub fn broadcast(kind: Kind, data: &[u8]) -> Result<u32> {
    send_tag(None, kind, data)
}

fn tag_arg(tag: Option<&str>) -> Result<&str> {
    match tag {
        Some("") => Err(Error::INVALID_ARGUMENT),
        Some(t) => Ok(t),
        None => Ok(""),
    }
}

/// Closes a connection with `code` (1000 or 3000..=4999) and a reason of at most 123
/// bytes. The object gets no close event for a connection it closes itself.
pub fn close(id: ConnId, code: u16, reason: &str) -> Result<()> {
    check(unsafe { raw::ws_close(id, code as i32, reason.as_ptr(), reason.len()) })?;
    Ok(())
}

/// Sets a connection's attachment (at most 16 KiB; empty removes it). The host keeps it
/// with the connection across hibernation; the change is kept only if the event succeeds.
pub fn set_attachment(id: ConnId, data: &[u8]) -> Result<()> {
    check(unsafe { raw::ws_attachment_set(id, data.as_ptr(), data.len()) })?;
    Ok(())
}

/// A connection's attachment; `None` when it has none.
pub fn attachment(id: ConnId) -> Result<Option<Vec<u8>>> {
    let out = take_output(SCRATCH, |p, cap| unsafe { raw::ws_attachment_get(id, p, cap) })?;
    Ok(if out.is_empty() { None } else { Some(out) })
}

/// Sets the object's auto-response: a text message equal to `request` (byte for byte) is
/// answered with `response` by the host, without an event and without waking a hibernated
/// object. Each at most 1 KiB; an empty `request` is `INVALID_ARGUMENT` (see
/// `clear_auto_response`). Kept with the object's connections: set it in `init` so that it
/// is back after a host restart.
pub fn set_auto_response(request: &str, response: &str) -> Result<()> {
    if request.is_empty() {
        return Err(Error::INVALID_ARGUMENT);
    }
    check(unsafe {
        raw::ws_auto_response(request.as_ptr(), request.len(), response.as_ptr(), response.len())
    })?;
    Ok(())
}

/// Removes the object's auto-response.
pub fn clear_auto_response() -> Result<()> {
    check(unsafe { raw::ws_auto_response("".as_ptr(), 0, "".as_ptr(), 0) })?;
    Ok(())
}

/// One open connection (ws-info).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WsInfo {
    pub id: ConnId,
    pub tags: Vec<String>,
    /// When the host last answered it with the auto-response (ms since the Unix epoch).
    pub auto_response_at: Option<i64>,
}

impl WsInfo {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// The object's open connections (only those with `tag`, when given), in the order they
/// were accepted. Includes this event's own accepts and excludes its own closes.
pub fn list(tag: Option<&str>) -> Result<Vec<WsInfo>> {
    let t = tag_arg(tag)?;
    let out = take_output(SCRATCH, |p, cap| unsafe { raw::ws_list(t.as_ptr(), t.len(), p, cap) })?;
    let mut d = Decoder::new(&out);
    let n = d.array()?;
    let mut infos = Vec::with_capacity(n);
    for _ in 0..n {
        let mut info = WsInfo::default();
        for _ in 0..d.map()? {
            match d.text()? {
                "id" => info.id = decode_id(&mut d)?,
                "tags" => info.tags = decode_tags(&mut d)?,
                "auto_response_at" => info.auto_response_at = Some(d.int()?),
                _ => d.skip()?,
            }
        }
        infos.push(info);
    }
    if !d.done() {
        return Err(Error::SDK_DECODE);
    }
    Ok(infos)
}

/// How many connections are open (with `tag`, when given).
pub fn count(tag: Option<&str>) -> Result<usize> {
    list(tag).map(|l| l.len())
}

fn decode_id(d: &mut Decoder) -> Result<ConnId> {
    ConnId::try_from(d.uint()?).map_err(|_| Error::SDK_DECODE)
}

fn decode_tags(d: &mut Decoder) -> Result<Vec<String>> {
    let n = d.array()?;
    let mut tags = Vec::with_capacity(n);
    for _ in 0..n {
        tags.push(d.text()?.into());
    }
    Ok(tags)
}

// ---- Events (ws-message, ws-close, ws-error) -------------------------------------------

/// A message arrived on one of the object's connections (`DurableObject::websocket_message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: ConnId,
    /// The connection's tags, as accepted.
    pub tags: Vec<String>,
    pub data: Data,
}

/// A connection the client ended, or that failed (after its `Failure`)
/// (`DurableObject::websocket_close`). Not delivered for connections the object closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub id: ConnId,
    pub tags: Vec<String>,
    /// The client's code; 1005 when its close frame had none; 1006 without a close frame.
    pub code: u16,
    pub reason: String,
    /// True when the client sent a close frame (the closing handshake ran).
    pub clean: bool,
}

/// A connection failed: a protocol violation, a message above the limit, the client
/// vanished (`DurableObject::websocket_error`). Its `Close` (clean: false) follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub id: ConnId,
    pub tags: Vec<String>,
    pub message: String,
}

macro_rules! has_tag {
    ($t:ty) => {
        impl $t {
            pub fn has_tag(&self, tag: &str) -> bool {
                self.tags.iter().any(|t| t == tag)
            }
        }
    };
}
has_tag!(Message);
has_tag!(Close);
has_tag!(Failure);

/// Reads the fields common to the three events; `field` reads the others (false: skip).
fn decode_event(
    input: &[u8],
    mut field: impl FnMut(&str, &mut Decoder) -> Result<bool>,
) -> Result<(ConnId, Vec<String>)> {
    let mut d = Decoder::new(input);
    let (mut id, mut tags) = (0, Vec::new());
    for _ in 0..d.map()? {
        match d.text()? {
            "id" => id = decode_id(&mut d)?,
            "tags" => tags = decode_tags(&mut d)?,
            k => {
                if !field(k, &mut d)? {
                    d.skip()?
                }
            }
        }
    }
    if !d.done() || id == 0 {
        return Err(Error::SDK_DECODE);
    }
    Ok((id, tags))
}

impl Message {
    pub(crate) fn decode(input: &[u8]) -> Result<Message> {
        let mut data = None;
        let (id, tags) = decode_event(input, |k, d| {
            if k != "data" {
                return Ok(false);
            }
            data = Some(match d.peek() {
                crate::cbor::Type::Text => Data::Text(d.text()?.into()),
                _ => Data::Binary(d.bytes()?.to_vec()),
            });
            Ok(true)
        })?;
        Ok(Message { id, tags, data: data.ok_or(Error::SDK_DECODE)? })
    }
}

impl Close {
    pub(crate) fn decode(input: &[u8]) -> Result<Close> {
        let (mut code, mut reason, mut clean) = (1005u16, String::new(), false);
        let (id, tags) = decode_event(input, |k, d| {
            match k {
                "code" => code = u16::try_from(d.uint()?).map_err(|_| Error::SDK_DECODE)?,
                "reason" => reason = d.text()?.into(),
                "clean" => clean = d.bool()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Close { id, tags, code, reason, clean })
    }
}

impl Failure {
    pub(crate) fn decode(input: &[u8]) -> Result<Failure> {
        let mut message = String::new();
        let (id, tags) = decode_event(input, |k, d| {
            if k != "message" {
                return Ok(false);
            }
            message = d.text()?.into();
            Ok(true)
        })?;
        Ok(Failure { id, tags, message })
    }
}
