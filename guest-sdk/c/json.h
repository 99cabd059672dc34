/*
 * json.h - a minimal JSON writer and a flat-object reader for dohost guests.
 *
 * Writer: builds JSON text into a fixed buffer (bounds-checked: bytes past the end are
 * counted, not written, so a first pass with no buffer measures) or into the event arena
 * (grows as needed). Commas and colons are placed for you:
 *
 *     dohost_json w;
 *     dohost_json_init_arena(&w);
 *     dohost_json_object(&w);
 *     dohost_json_key(&w, "due_ms");
 *     dohost_json_int(&w, due);
 *     dohost_json_end(&w);
 *     return dohost_respond_json(201, &w);          -> {"due_ms":1700000000000}
 *
 * Strings are escaped ('"', '\\' and control characters); other bytes are copied, so
 * pass UTF-8. Like the CBOR encoder the writer has a sticky error: check once at the end.
 *
 * Reader: looks one member up in a JSON object, e.g. a request body. Each call checks the
 * whole text (RFC 8259 syntax, UTF-8, escapes, nesting up to 32 levels) so malformed
 * input is reported the same way whichever member is asked for. A repeated member: the
 * last one wins. Nested values are checked and skipped but cannot be looked into.
 *
 * Lookups return 1 (found), 0 (no such member), DOHOST_ERR_BAD_ENCODING (the text is not
 * a JSON object), DOHOST_ERR_INVALID_ARGUMENT (the member has another type, or an integer
 * does not fit in int64_t) or DOHOST_ERR_NO_MEMORY.
 */
#ifndef DOHOST_JSON_H
#define DOHOST_JSON_H

#include "dohost.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Writer ---------------------------------------------------------------------------- */

#define DOHOST_JSON_MAX_DEPTH 32

typedef struct {
    char *buf;
    size_t cap;
    size_t len;         /* bytes produced so far (may exceed cap with a fixed buffer) */
    bool grow;          /* arena mode: grow instead of stopping at cap */
    bool err;           /* sticky: out of memory, too deep, or unbalanced */
    bool after_key;     /* the next value is a member's: no comma before it */
    uint8_t depth;      /* open containers */
    uint32_t has_items; /* bit d-1: the container at depth d has an item already */
    uint32_t objects;   /* bit d-1: the container at depth d is an object (else array) */
} dohost_json;

/* Into buf[cap]; buf may be NULL with cap 0 to measure. */
void dohost_json_init(dohost_json *w, void *buf, size_t cap);
/* Into the event arena, growing as needed (valid until the next event). */
void dohost_json_init_arena(dohost_json *w);
/* True when nothing failed, every container was closed and everything fitted. */
bool dohost_json_ok(const dohost_json *w);

void dohost_json_object(dohost_json *w); /* { */
void dohost_json_array(dohost_json *w);  /* [ */
void dohost_json_end(dohost_json *w);    /* closes the innermost object or array */
/* A member name inside an object; the next call writes its value. */
void dohost_json_key(dohost_json *w, const char *name);
void dohost_json_str(dohost_json *w, const void *s, size_t n);
void dohost_json_cstr(dohost_json *w, const char *s);
void dohost_json_int(dohost_json *w, int64_t v);
void dohost_json_bool(dohost_json *w, bool v);
void dohost_json_null(dohost_json *w);
/* A value that is already JSON text (e.g. stored pre-rendered), copied as is. */
void dohost_json_raw(dohost_json *w, const void *json, size_t n);

/* Responds with the text as application/json. DOHOST_ERR_NO_MEMORY when the writer is
 * not dohost_json_ok(), else the result of dohost_respond. */
int32_t dohost_respond_json(int status, const dohost_json *w);

/* ---- Reader ---------------------------------------------------------------------------- */

/* The member's value as raw JSON text (pointing into json). */
int32_t dohost_json_find(const void *json, size_t len, const char *name, dohost_bytes *raw);
/* An integer member: digits with an optional '-', no fraction or exponent. */
int32_t dohost_json_get_int(const void *json, size_t len, const char *name, int64_t *out);
/* A string member, unescaped into the arena as UTF-8, followed by a NUL byte not counted
 * in out->len (the text itself may contain NUL, from "\u0000"). */
int32_t dohost_json_get_str(const void *json, size_t len, const char *name, dohost_bytes *out);

#ifdef __cplusplus
}
#endif

#endif /* DOHOST_JSON_H */
