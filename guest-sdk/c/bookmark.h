/*
 * bookmark.h - bookmarks: point-in-time recovery of the object's own storage for C guests
 * (abi/README.md section 5, "Bookmarks"). Link bookmark.c with dohost.c.
 *
 * In the style of Durable Objects' getCurrentBookmark / getBookmarkForTime /
 * onNextSessionRestoreBookmark:
 *
 *     dohost_bookmark before;
 *     dohost_bookmark_current(&before);       // save before.text somewhere (kv, a reply)
 *     ...                                       // later, in another event:
 *     dohost_bookmark_restore(before.text);   // after this event, the object's storage
 *                                               // goes back to what it was at `before`
 *
 * What to know:
 * - A bookmark is 52 ASCII characters naming a millisecond of this object's history,
 *   MACed by the host: it cannot be forged, nor used by another object. Two bookmarks
 *   of one object compare in time order with strcmp.
 * - dohost_bookmark_restore only records the request. If the event succeeds, its
 *   activation ends and, before the object's next event, its storage (keys and alarm)
 *   is replaced by its state at the bookmark. If the event fails, the request is dropped.
 * - They need a host with a replica (dohost serve --replica): without one they return
 *   DOHOST_ERR_NOT_SUPPORTED, and dohost_last_error() says why.
 */
#ifndef DOHOST_BOOKMARK_H
#define DOHOST_BOOKMARK_H

#include "dohost.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DOHOST_BOOKMARK_LEN 52

typedef struct {
    char text[DOHOST_BOOKMARK_LEN + 1]; /* NUL-terminated */
} dohost_bookmark;

/* The bookmark of now. Returns 0 or a negative status (DOHOST_ERR_NOT_SUPPORTED without
 * a replica). */
int32_t dohost_bookmark_current(dohost_bookmark *out);
/* The bookmark of time_ms (ms since the Unix epoch, not in the future). Returns 0 or a
 * negative status (DOHOST_ERR_INVALID_ARGUMENT for a negative or future time). */
int32_t dohost_bookmark_for_time(int64_t time_ms, dohost_bookmark *out);
/* Restore the object's storage to `bookmark` (NUL-terminated) once this event has
 * succeeded, before the next one. Returns 0 or a negative status
 * (DOHOST_ERR_INVALID_ARGUMENT: not a bookmark of this object). */
int32_t dohost_bookmark_restore(const char *bookmark);

DOHOST_IMPORT(bookmark_current) int32_t dohost_raw_bookmark_current(void *out, size_t cap);
DOHOST_IMPORT(bookmark_for_time)
int32_t dohost_raw_bookmark_for_time(int64_t time_ms, void *out, size_t cap);
DOHOST_IMPORT(bookmark_restore) int32_t dohost_raw_bookmark_restore(const void *p, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* DOHOST_BOOKMARK_H */
