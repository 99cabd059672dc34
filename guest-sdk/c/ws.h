/*
 * ws.h - WebSockets for C guests (abi/README.md section 5 "WebSockets"; abi/websocket.cddl).
 * Link ws.c with dohost.c and cbor.c.
 *
 * The host owns the connections: the object may hibernate (its instance dropped) while
 * they stay open, and the next message re-creates it (dohost_init runs again) with its
 * connections, tags and attachments intact. Keep per-connection state in an attachment
 * (dohost_ws_attachment_set), not in static variables.
 *
 *     int on_fetch(const dohost_request *req) {
 *         const char *tags[] = {"room:lobby"};
 *         int32_t id = dohost_ws_accept(tags, 1);   // not_supported: not an upgrade
 *         return id < 0 ? dohost_respond_text(426, "use a WebSocket\n") : 0;
 *     }
 *     int on_message(const dohost_ws_message *m) {   // DOHOST_EXPORT_WS_MESSAGE(on_message)
 *         int32_t n = dohost_ws_send_tag("room:lobby", m->kind, m->data, m->len);
 *         return n < 0 ? n : 0;
 *     }
 *
 * Sends, closes and attachment changes are output of the event: they take effect once
 * the event's writes are durable, and are dropped if the event fails.
 */
#ifndef DOHOST_WS_H
#define DOHOST_WS_H

#include "dohost.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DOHOST_WS_TEXT 0
#define DOHOST_WS_BINARY 1
#define DOHOST_WS_MAX_TAGS 10

/* A message that arrived (abi/websocket.cddl ws-message). Arena memory. */
typedef struct {
    uint32_t id;
    const char *const *tags; /* NUL-terminated */
    size_t tag_count;
    int kind;            /* DOHOST_WS_TEXT or DOHOST_WS_BINARY */
    const uint8_t *data; /* followed by a NUL byte not counted in len */
    size_t len;
} dohost_ws_message;

/* A connection ended (ws-close): clean when the client sent a close frame. */
typedef struct {
    uint32_t id;
    const char *const *tags;
    size_t tag_count;
    int code; /* the client's code; 1005 none given; 1006 no close frame */
    const char *reason;
    bool clean;
} dohost_ws_close_info;

/* A connection failed (ws-error); a close event follows. */
typedef struct {
    uint32_t id;
    const char *const *tags;
    size_t tag_count;
    const char *message;
} dohost_ws_error_info;

/* One open connection (ws-info). */
typedef struct {
    uint32_t id;
    const char *const *tags;
    size_t tag_count;
    int64_t auto_response_at; /* ms since the epoch, or -1 when never */
} dohost_ws_info;

/* Accepts the WebSocket upgrade of this fetch with up to 10 tags (NUL-terminated, 1-256
 * bytes). Returns the connection id (> 0) or a negative status: DOHOST_ERR_NOT_SUPPORTED
 * (not an upgrade request, or no DOHOST_EXPORT_WS_MESSAGE), DOHOST_ERR_INVALID_ARGUMENT,
 * DOHOST_ERR_LIMIT_EXCEEDED (connections per object), DOHOST_ERR_QUOTA_EXCEEDED. */
int32_t dohost_ws_accept(const char *const *tags, size_t tag_count);
/* Sends one message to a connection. 0 or a negative status (DOHOST_ERR_NOT_FOUND...). */
int32_t dohost_ws_send(uint32_t id, int kind, const void *data, size_t len);
int32_t dohost_ws_send_text(uint32_t id, const char *text); /* NUL-terminated */
/* Sends to every connection with `tag` (NULL: every connection). Returns how many. */
int32_t dohost_ws_send_tag(const char *tag, int kind, const void *data, size_t len);
/* Closes a connection with code 1000 or 3000-4999 and a reason of at most 123 bytes
 * (NULL: none). No close event follows for it. */
int32_t dohost_ws_close(uint32_t id, int code, const char *reason);
/* The open connections (those with `tag`; NULL: all) in accept order, in the arena. */
int32_t dohost_ws_list(const char *tag, dohost_ws_info **out, size_t *count);
/* Sets (len 0: removes) the connection's attachment, at most 16 KiB. */
int32_t dohost_ws_attachment_set(uint32_t id, const void *data, size_t len);
/* The attachment (out->len 0 when none). Returns its length or a negative status. */
int32_t dohost_ws_attachment_get(uint32_t id, dohost_bytes *out);
/* The object's auto-response pair: a text message equal to `request` is answered with
 * `response` by the host, without an event. request NULL removes the pair. Each at most
 * 1 KiB of UTF-8. */
int32_t dohost_ws_auto_response(const char *request, const char *response);

/* Used by the macros below; not for direct use. */
int32_t dohost__ws_read_message(int32_t len, dohost_ws_message *m);
int32_t dohost__ws_read_close(int32_t len, dohost_ws_close_info *c);
int32_t dohost__ws_read_error(int32_t len, dohost_ws_error_info *e);

/* Exports dohost_ws_message calling `int fn(const dohost_ws_message *)`. Required to accept. */
#define DOHOST_EXPORT_WS_MESSAGE(fn)                                                     \
    __attribute__((export_name("dohost_ws_message"))) int32_t dohost__export_ws_message( \
        int32_t len)                                                                     \
    {                                                                                    \
        dohost_ws_message m;                                                             \
        dohost__begin_event();                                                           \
        int32_t st = dohost__ws_read_message(len, &m);                                   \
        return st != 0 ? st : (fn)(&m);                                                  \
    }
/* Exports dohost_ws_close calling `int fn(const dohost_ws_close_info *)`. */
#define DOHOST_EXPORT_WS_CLOSE(fn)                                                       \
    __attribute__((export_name("dohost_ws_close"))) int32_t dohost__export_ws_close(     \
        int32_t len)                                                                     \
    {                                                                                    \
        dohost_ws_close_info c;                                                          \
        dohost__begin_event();                                                           \
        int32_t st = dohost__ws_read_close(len, &c);                                     \
        return st != 0 ? st : (fn)(&c);                                                  \
    }
/* Exports dohost_ws_error calling `int fn(const dohost_ws_error_info *)`. */
#define DOHOST_EXPORT_WS_ERROR(fn)                                                       \
    __attribute__((export_name("dohost_ws_error"))) int32_t dohost__export_ws_error(     \
        int32_t len)                                                                     \
    {                                                                                    \
        dohost_ws_error_info e;                                                          \
        dohost__begin_event();                                                           \
        int32_t st = dohost__ws_read_error(len, &e);                                     \
        return st != 0 ? st : (fn)(&e);                                                  \
    }

/* ---- Raw imports -------------------------------------------------------------------- */
DOHOST_IMPORT(ws_accept) int32_t dohost_raw_ws_accept(const void *tags, size_t len);
DOHOST_IMPORT(ws_send)
int32_t dohost_raw_ws_send(uint32_t id, int32_t kind, const void *p, size_t len);
DOHOST_IMPORT(ws_send_tag)
int32_t dohost_raw_ws_send_tag(const void *tag, size_t tag_len, int32_t kind, const void *p,
                               size_t len);
DOHOST_IMPORT(ws_close)
int32_t dohost_raw_ws_close(uint32_t id, int32_t code, const void *reason, size_t len);
DOHOST_IMPORT(ws_list)
int32_t dohost_raw_ws_list(const void *tag, size_t tag_len, void *out, size_t cap);
DOHOST_IMPORT(ws_attachment_set)
int32_t dohost_raw_ws_attachment_set(uint32_t id, const void *p, size_t len);
DOHOST_IMPORT(ws_attachment_get)
int32_t dohost_raw_ws_attachment_get(uint32_t id, void *out, size_t cap);
DOHOST_IMPORT(ws_auto_response)
int32_t dohost_raw_ws_auto_response(const void *req, size_t req_len, const void *resp,
                                    size_t resp_len);

#ifdef __cplusplus
}
#endif

#endif /* DOHOST_WS_H */
