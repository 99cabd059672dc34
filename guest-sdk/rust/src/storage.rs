//! Key/value storage (abi/README.md section 5, abi/kv.cddl, abi/list.cddl).
//!
//! Keys and values are bytes; keys sort by their bytes. Limits: key <= 2,048 bytes,
//! key + value <= 2 MiB, at most 128 keys per `*_many` call. Every write of an event
//! commits with it, or not at all.

use crate::cbor::{Decoder, Encoder};
use crate::{check, raw, take_output, Error, Result, SCRATCH};

/// The value of `key`, or `None` when it does not exist.
pub fn get(key: &[u8]) -> Result<Option<Vec<u8>>> {
    match take_output(SCRATCH, |p, cap| unsafe { raw::kv_get(key.as_ptr(), key.len(), p, cap) }) {
        Ok(v) => Ok(Some(v)),
        Err(Error::NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn put(key: &[u8], value: &[u8]) -> Result<()> {
    check(unsafe { raw::kv_put(key.as_ptr(), key.len(), value.as_ptr(), value.len()) })?;
    Ok(())
}

/// True when the key existed.
pub fn delete(key: &[u8]) -> Result<bool> {
    Ok(check(unsafe { raw::kv_delete(key.as_ptr(), key.len()) })? == 1)
}

/// Deletes every key of the object.
pub fn delete_all() -> Result<()> {
    check(unsafe { raw::kv_delete_all() })?;
    Ok(())
}

fn encode_keys<K: AsRef<[u8]>>(keys: &[K]) -> Vec<u8> {
    let size: usize = keys.iter().map(|k| k.as_ref().len() + 9).sum();
    let mut e = Encoder::with_capacity(size + 9);
    e.array(keys.len());
    for k in keys {
        e.bytes(k.as_ref());
    }
    e.finish()
}

/// The values of up to 128 keys in one call: `result[i]` is the value of `keys[i]`, or
/// `None` when that key does not exist.
pub fn get_many<K: AsRef<[u8]>>(keys: &[K]) -> Result<Vec<Option<Vec<u8>>>> {
    let input = encode_keys(keys);
    let out = take_output(SCRATCH, |p, cap| unsafe {
        raw::kv_get_many(input.as_ptr(), input.len(), p, cap)
    })?;
    let mut values: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
    let mut d = Decoder::new(&out);
    for _ in 0..d.map()? {
        let k = d.bytes()?;
        let v = d.bytes()?;
        for (i, key) in keys.iter().enumerate() {
            if key.as_ref() == k {
                values[i] = Some(v.to_vec()); // a key asked for twice gets its value twice
            }
        }
    }
    if !d.done() {
        return Err(Error::SDK_DECODE);
    }
    Ok(values)
}

/// Writes up to 128 entries, all or nothing.
pub fn put_many<K: AsRef<[u8]>, V: AsRef<[u8]>>(entries: &[(K, V)]) -> Result<()> {
    let size: usize = entries.iter().map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 18).sum();
    let mut e = Encoder::with_capacity(size + 9);
    e.map(entries.len());
    for (k, v) in entries {
        e.bytes(k.as_ref()).bytes(v.as_ref());
    }
    let input = e.finish();
    check(unsafe { raw::kv_put_many(input.as_ptr(), input.len()) })?;
    Ok(())
}

/// Deletes up to 128 keys; returns how many existed.
pub fn delete_many<K: AsRef<[u8]>>(keys: &[K]) -> Result<u32> {
    let input = encode_keys(keys);
    check(unsafe { raw::kv_delete_many(input.as_ptr(), input.len()) })
}

/// Which keys `list` returns. `None` means "not set"; `Some(vec![])` for `start` or `end`
/// is the empty key (so an empty `end` lists nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys that begin with these bytes.
    pub prefix: Option<Vec<u8>>,
    /// First key (inclusive).
    pub start: Option<Vec<u8>>,
    /// Stop before this key (exclusive).
    pub end: Option<Vec<u8>>,
    /// Descending order; start and end keep their meaning.
    pub reverse: bool,
    /// At most this many entries; 0 means no limit.
    pub limit: u32,
}

impl ListOptions {
    pub fn new() -> ListOptions {
        ListOptions::default()
    }
    pub fn prefix(mut self, p: impl Into<Vec<u8>>) -> Self {
        self.prefix = Some(p.into());
        self
    }
    pub fn start(mut self, k: impl Into<Vec<u8>>) -> Self {
        self.start = Some(k.into());
        self
    }
    pub fn end(mut self, k: impl Into<Vec<u8>>) -> Self {
        self.end = Some(k.into());
        self
    }
    pub fn reverse(mut self, r: bool) -> Self {
        self.reverse = r;
        self
    }
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = n;
        self
    }

    fn encode(&self, limit: u32) -> Vec<u8> {
        let fields = [&self.prefix, &self.start, &self.end];
        let n = fields.iter().filter(|f| f.is_some()).count()
            + self.reverse as usize
            + (limit != 0) as usize;
        let mut e = Encoder::with_capacity(64 + fields.iter().map(|f| f.as_ref().map_or(0, |v| v.len())).sum::<usize>());
        e.map(n);
        for (name, value) in ["prefix", "start", "end"].iter().zip(fields) {
            if let Some(v) = value {
                e.text(name).bytes(v);
            }
        }
        if self.reverse {
            e.text("reverse").bool(true);
        }
        if limit != 0 {
            e.text("limit").uint(limit as u64);
        }
        e.finish()
    }
}

/// The entries of a listing, in order, as an iterator of `Result<(key, value)>`. The SDK
/// follows the host's `more` flag with further `kv_list` calls as you iterate.
pub struct List {
    opts: ListOptions,
    page: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    more: bool,
    last_key: Option<Vec<u8>>,
    returned: u32,
    pages: u32,
}

/// Lists entries (the first `kv_list` call happens here).
pub fn list(opts: ListOptions) -> Result<List> {
    let mut it = List {
        opts,
        page: Vec::new().into_iter(),
        more: false,
        last_key: None,
        returned: 0,
        pages: 0,
    };
    it.fetch_page()?;
    Ok(it)
}

impl List {
    /// How many `kv_list` calls were made so far.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    fn fetch_page(&mut self) -> Result<()> {
        let limit = if self.opts.limit != 0 { self.opts.limit - self.returned } else { 0 };
        let input = self.opts.encode(limit);
        let out = take_output(SCRATCH, |p, cap| unsafe {
            raw::kv_list(input.as_ptr(), input.len(), p, cap)
        })?;
        self.pages += 1;
        self.more = false;
        let mut entries = Vec::new();
        let mut d = Decoder::new(&out);
        for _ in 0..d.map()? {
            match d.text()? {
                "entries" => {
                    let n = d.array()?;
                    entries.reserve(n);
                    for _ in 0..n {
                        if d.array()? != 2 {
                            return Err(Error::SDK_DECODE);
                        }
                        let k = d.bytes()?.to_vec();
                        entries.push((k, d.bytes()?.to_vec()));
                    }
                }
                "more" => self.more = d.bool()?,
                _ => d.skip()?,
            }
        }
        if !d.done() {
            return Err(Error::SDK_DECODE);
        }
        // A page without entries cannot be continued (and must not loop forever).
        self.last_key = entries.last().map(|(k, _)| k.clone());
        self.page = entries.into_iter();
        Ok(())
    }

    /// Moves the range past the last key received (abi/README.md, kv_list).
    fn advance(&mut self, last: Vec<u8>) {
        if self.opts.reverse {
            self.opts.end = Some(last);
        } else {
            let mut next = last;
            next.push(0); // the smallest key after `last` in byte order
            self.opts.start = Some(next);
        }
    }
}

impl Iterator for List {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.opts.limit != 0 && self.returned >= self.opts.limit {
                return None;
            }
            if let Some(entry) = self.page.next() {
                self.returned += 1;
                return Some(Ok(entry));
            }
            if !self.more {
                return None;
            }
            let last = self.last_key.take()?;
            self.advance(last);
            if let Err(e) = self.fetch_page() {
                self.more = false;
                return Some(Err(e));
            }
        }
    }
}
