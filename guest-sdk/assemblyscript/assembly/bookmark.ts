// Bookmarks: point-in-time recovery of the object's own storage (abi/README.md section 5,
// "Bookmarks"), in the style of Durable Objects' getCurrentBookmark /
// getBookmarkForTime / onNextSessionRestoreBookmark.
//
//   const before = Bookmark.current();   // keep it (storage, a reply)
//   ...                                  // later, in another event:
//   Bookmark.restore(before!);           // after this event, storage goes back to it
//
// A bookmark is 52 ASCII characters naming a millisecond of this object's history, MACed
// by the host: it cannot be forged, nor used by another object; two of one object compare
// in time order as strings. restore() only records the request: if the event succeeds,
// its instance ends and, before the next event, the object's keys and alarm become what
// they were at the bookmark; if the event fails, the request is dropped. Without a
// replica on the host (dohost serve --replica) each call fails with NOT_SUPPORTED.

import { str, utf8 } from "./bytes";
import { outputStatus, takeOutput } from "./output";
import * as raw from "./raw";

const BUF = new Uint8Array(52);

export class Bookmark {
  /** The status of the last call: 0 or the bookmark's length, or < 0. */
  static status: i32 = 0;

  /** The bookmark of now, or null (status < 0: NOT_SUPPORTED without a replica). */
  static current(): string | null {
    return Bookmark.take(raw.bookmark_current(BUF.dataStart, <usize>BUF.length));
  }

  /** The bookmark of `timeMs` (ms since the Unix epoch), or null (status
   *  INVALID_ARGUMENT for a negative or future time). */
  static forTime(timeMs: i64): string | null {
    return Bookmark.take(raw.bookmark_for_time(timeMs, BUF.dataStart, <usize>BUF.length));
  }

  /** Restore the object's storage to `bookmark` once this event has succeeded, before the
   *  next one. Returns 0, or a negative status (INVALID_ARGUMENT: not a bookmark of this
   *  object). */
  static restore(bookmark: string): i32 {
    return Bookmark.restoreBytes(utf8(bookmark));
  }

  /** restore() with the bookmark's bytes. */
  static restoreBytes(bookmark: Uint8Array): i32 {
    return (Bookmark.status = raw.bookmark_restore(bookmark.dataStart, <usize>bookmark.length));
  }

  private static take(st: i32): string | null {
    const out = takeOutput(BUF, st);
    Bookmark.status = outputStatus;
    return out === null ? null : str(out);
  }
}
