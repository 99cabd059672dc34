// Key/value storage (abi/README.md section 5, abi/kv.cddl, abi/list.cddl).
//
// Keys and values are bytes; keys sort by their bytes. Limits: key <= 2,048 bytes,
// key + value <= 2 MiB, at most 128 keys per *Many call. Every write of an event commits
// with it, or not at all.
//
// Calls return a status (>= 0 success, < 0 a Status code) or, for reads, null on failure;
// either way `Storage.status` holds the last call's status (NOT_FOUND for a missing key).

import * as raw from "./raw";
import { Decoder, Encoder } from "./cbor";
import { concat, str, utf8 } from "./bytes";
import { SCRATCH, outputStatus, takeOutput } from "./output";
import { Status } from "./status";

export class Entry {
  constructor(public key: Uint8Array, public value: Uint8Array) {}
}

/** Which keys `Storage.list` returns. null means "not set"; an empty `start` or `end` is
 *  the empty key (so an empty `end` lists nothing). */
export class ListOptions {
  /** Only keys that begin with these bytes. */
  prefix: Uint8Array | null = null;
  /** First key (inclusive). */
  start: Uint8Array | null = null;
  /** Stop before this key (exclusive). */
  end: Uint8Array | null = null;
  /** Descending order; start and end keep their meaning. */
  reverse: bool = false;
  /** At most this many entries; 0 means no limit. */
  limit: u32 = 0;

  clone(): ListOptions {
    const o = new ListOptions();
    o.prefix = this.prefix;
    o.start = this.start;
    o.end = this.end;
    o.reverse = this.reverse;
    o.limit = this.limit;
    return o;
  }

  encode(limit: u32): Encoder {
    const e = new Encoder(64);
    let n = (this.reverse ? 1 : 0) + (limit != 0 ? 1 : 0);
    if (this.prefix !== null) n++;
    if (this.start !== null) n++;
    if (this.end !== null) n++;
    e.map(n);
    const prefix = this.prefix;
    if (prefix !== null) e.text("prefix").bytes(prefix);
    const start = this.start;
    if (start !== null) e.text("start").bytes(start);
    const end = this.end;
    if (end !== null) e.text("end").bytes(end);
    if (this.reverse) e.text("reverse").bool(true);
    if (limit != 0) e.text("limit").uint(<u64>limit);
    return e;
  }
}

/** A listing in progress: `while (it.next()) use(it.key, it.value)`, then check
 *  `it.status` (< 0 when a call failed). The SDK follows the host's `more` flag with
 *  further kv_list calls as you go. */
export class ListIterator {
  key: Uint8Array = new Uint8Array(0);
  value: Uint8Array = new Uint8Array(0);
  /** 0, or the negative status of the call that failed. */
  status: i32 = 0;
  /** kv_list calls made so far. */
  pages: i32 = 0;
  private opts: ListOptions;
  private page: Decoder | null = null;
  private left: i32 = 0;
  private more: bool = false;
  private returned: u32 = 0;
  private lastKey: Uint8Array | null = null;

  constructor(opts: ListOptions) {
    this.opts = opts.clone(); // start/end advance as pages are read
    this.fetchPage();
  }

  private fetchPage(): void {
    const limit = this.opts.limit != 0 ? this.opts.limit - this.returned : 0;
    const e = this.opts.encode(limit);
    const out = takeOutput(SCRATCH, raw.kv_list(e.dataStart, <usize>e.length, SCRATCH.dataStart, <usize>SCRATCH.length));
    Storage.status = outputStatus;
    this.left = 0;
    this.more = false;
    this.lastKey = null;
    if (out === null) {
      this.status = outputStatus;
      return;
    }
    this.pages++;
    const d = new Decoder(out);
    const n = d.map();
    for (let i = 0; i < n && d.ok; i++) {
      d.readKey();
      if (d.is("entries")) {
        const count = d.array();
        const entries = new Array<Entry>(count);
        for (let j = 0; j < count && d.ok; j++) {
          if (d.array() != 2) {
            this.status = Status.SDK_DECODE;
            return;
          }
          const k = d.bytesView(); // views of the page: no copy
          entries[j] = new Entry(k, d.bytesView());
        }
        this.entries = entries;
        this.index = 0;
        this.left = count;
      } else if (d.is("more")) {
        this.more = d.bool();
      } else {
        d.skip();
      }
    }
    if (!d.done) {
      this.left = 0;
      this.more = false;
      this.status = Status.SDK_DECODE;
      Storage.status = Status.SDK_DECODE;
    }
  }

  private entries: Entry[] = [];
  private index: i32 = 0;

  /** Moves to the next entry (in `key` and `value`); false at the end or on failure. */
  next(): bool {
    while (this.status >= 0) {
      if (this.opts.limit != 0 && this.returned >= this.opts.limit) return false;
      if (this.left > 0) {
        const entry = this.entries[this.index++];
        this.key = entry.key;
        this.value = entry.value;
        this.left--;
        this.returned++;
        this.lastKey = entry.key;
        return true;
      }
      // A page without entries cannot be continued (and must not loop forever).
      const last = this.lastKey;
      if (!this.more || last === null) return false;
      if (this.opts.reverse) this.opts.end = last;
      else this.opts.start = concat(last, new Uint8Array(1)); // last ++ 0x00
      this.fetchPage();
    }
    return false;
  }
}

function encodeKeys(keys: Uint8Array[]): Encoder {
  let size = 9;
  for (let i = 0; i < keys.length; i++) size += keys[i].length + 9;
  const e = new Encoder(size);
  e.array(keys.length);
  for (let i = 0; i < keys.length; i++) e.bytes(keys[i]);
  return e;
}

export class Storage {
  /** The status of the last storage call. */
  static status: i32 = 0;

  /** The value of `key`, or null when it does not exist (status NOT_FOUND) or on error. */
  static get(key: Uint8Array): Uint8Array | null {
    const st = raw.kv_get(key.dataStart, <usize>key.length, SCRATCH.dataStart, <usize>SCRATCH.length);
    const out = takeOutput(SCRATCH, st);
    Storage.status = outputStatus;
    return out;
  }

  /** Returns 0 or a negative status. */
  static put(key: Uint8Array, value: Uint8Array): i32 {
    return (Storage.status = raw.kv_put(key.dataStart, <usize>key.length, value.dataStart, <usize>value.length));
  }

  /** Returns 1 when the key existed, 0 when not, or a negative status. */
  static delete(key: Uint8Array): i32 {
    return (Storage.status = raw.kv_delete(key.dataStart, <usize>key.length));
  }

  /** Deletes every key of the object; returns 0 or a negative status. */
  static deleteAll(): i32 {
    return (Storage.status = raw.kv_delete_all());
  }

  /** The values of up to 128 keys in one call: `result[i]` is the value of `keys[i]`, or
   *  null when that key does not exist. Null on error. */
  static getMany(keys: Uint8Array[]): Array<Uint8Array | null> | null {
    const e = encodeKeys(keys);
    const st = raw.kv_get_many(e.dataStart, <usize>e.length, SCRATCH.dataStart, <usize>SCRATCH.length);
    const out = takeOutput(SCRATCH, st);
    Storage.status = outputStatus;
    if (out === null) return null;
    const values = new Array<Uint8Array | null>(keys.length);
    const d = new Decoder(out);
    const n = d.map();
    for (let i = 0; i < n && d.ok; i++) {
      const k = d.bytesView();
      const v = d.bytesView(); // a view of the result: no copy
      for (let j = 0; j < keys.length; j++) {
        const key = keys[j];
        if (key.length == k.length && memory.compare(key.dataStart, k.dataStart, <usize>k.length) == 0) {
          values[j] = v; // a key asked for twice gets its value twice
        }
      }
    }
    if (!d.done) {
      Storage.status = Status.SDK_DECODE;
      return null;
    }
    return values;
  }

  /** Writes up to 128 entries, all or nothing; returns 0 or a negative status. */
  static putMany(entries: Entry[]): i32 {
    let size = 9;
    for (let i = 0; i < entries.length; i++) size += entries[i].key.length + entries[i].value.length + 18;
    const e = new Encoder(size);
    e.map(entries.length);
    for (let i = 0; i < entries.length; i++) e.bytes(entries[i].key).bytes(entries[i].value);
    return (Storage.status = raw.kv_put_many(e.dataStart, <usize>e.length));
  }

  /** Deletes up to 128 keys; returns how many existed, or a negative status. */
  static deleteMany(keys: Uint8Array[]): i32 {
    const e = encodeKeys(keys);
    return (Storage.status = raw.kv_delete_many(e.dataStart, <usize>e.length));
  }

  /** Lists entries (the first kv_list call happens here). */
  static list(opts: ListOptions | null = null): ListIterator {
    return new ListIterator(opts !== null ? opts : new ListOptions());
  }

  /** `get` with text key and value. */
  static getText(key: string): string | null {
    const v = Storage.get(utf8(key));
    return v === null ? null : str(v);
  }

  /** `put` with text key and value. */
  static putText(key: string, value: string): i32 {
    return Storage.put(utf8(key), utf8(value));
  }
}
