/*
 * call.h - calls to other objects for C guests (abi/README.md, section 5 "Object calls";
 * abi/call.cddl). Link call.c with dohost.c and cbor.c.
 *
 * A call sends a fetch-shaped request to another object of the same tenant (any of its
 * classes, by name or by id) and returns that object's response:
 *
 *     dohost_call_request req = {.method = "POST", .path = "/runs/7/finished",
 *                                .body = "{}", .body_len = 2};
 *     dohost_call_response resp;
 *     int32_t status = dohost_call("pipeline", "build-main", &req, &resp);
 *     if (status < 0)
 *         return status;              // the call could not be made: see below
 *     if (status >= 500)
 *         ...                         // the callee failed: resp.body is a JSON error
 *
 * What to know:
 * - A call is a commit point: the event's writes so far are committed, and durable,
 *   before the call leaves; writes after it form a new transaction. If the event fails
 *   later, only the writes made after its last call are rolled back.
 * - The callee runs its own event, with its own limits and transaction. If it traps or
 *   runs out of CPU time, the call still succeeds: the response is a 500 with the JSON
 *   body {"error": {"code": "object_error" | "cpu_limit", "message": ...}}.
 * - A call waits; the caller's CPU deadline does not tick meanwhile.
 * - Negative statuses are for calls that could not be made: DOHOST_ERR_CALL_CYCLE (the
 *   target is already waiting in this call chain, e.g. A -> B -> A, or two events would
 *   wait on each other), DOHOST_ERR_CALL_DEPTH (more than 16 calls deep),
 *   DOHOST_ERR_CALL_FAILED (no such class in this tenant, an id of another class, the
 *   host shutting down), DOHOST_ERR_BAD_ENCODING (a path not beginning with "/", an
 *   invalid header). dohost_last_error() has the message (for a cycle it names the chain).
 *
 * The response (headers and body) lives in the event arena like other SDK results; the
 * body is followed by a NUL byte not counted in body_len.
 *
 * A callee can tell who called: dohost_caller() reads the headers only the host sets.
 * dohost_self() gives an object its own address, e.g. to pass on for a callback.
 */
#ifndef DOHOST_CALL_H
#define DOHOST_CALL_H

#include "dohost.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DOHOST_ERR_CALL_CYCLE (-15)
#define DOHOST_ERR_CALL_DEPTH (-16)
#define DOHOST_ERR_CALL_FAILED (-17)

/* The request to send (abi/request.cddl). */
typedef struct {
    const char *method; /* NULL: "GET" */
    const char *path;   /* NULL: "/"; must begin with "/" */
    const char *query;  /* NULL: none; without the "?" */
    /* As in dohost_response: a name_len/value_len of 0 means "NUL-terminated". Names are
     * lower-cased by the host, as for requests from HTTP. */
    const dohost_header *headers;
    size_t header_count;
    const void *body;
    size_t body_len;
} dohost_call_request;

/* The callee's response (abi/response.cddl). */
typedef struct {
    int status;
    const dohost_header *headers; /* NUL-terminated names and values */
    size_t header_count;
    const uint8_t *body; /* followed by a NUL byte not counted in body_len */
    size_t body_len;
} dohost_call_response;

/* Calls the object named `name` of class `cls` (both NUL-terminated). Returns the
 * response's HTTP status (100..599) and fills *resp, or a negative status. req may be
 * NULL (GET /); resp may be NULL when only the status matters. */
int32_t dohost_call(const char *cls, const char *name, const dohost_call_request *req,
                    dohost_call_response *resp);
/* The same for an object given by its id (64 hex characters, as the host prints it). */
int32_t dohost_call_id(const char *cls, const char *id_hex, const dohost_call_request *req,
                       dohost_call_response *resp);
/* The same with the name's length given (names are any UTF-8 up to 1 KiB). */
int32_t dohost_call_n(const char *cls, const void *name, size_t name_len,
                      const dohost_call_request *req, dohost_call_response *resp);
/* The first response header with this name (case-insensitive), or NULL. */
const char *dohost_call_header(const dohost_call_response *resp, const char *name);

/* An object's address. */
typedef struct {
    const char *class_name; /* NUL-terminated, in the arena */
    const char *id;         /* 64 hex characters */
    const char *name;       /* NULL when the host does not know it */
    size_t name_len;
} dohost_object_ref;

/* This object's own class, id and (when known) name: an address to hand to others,
 * e.g. for a callback. Returns 0 or a negative status. */
int32_t dohost_self(dohost_object_ref *out);

/* The caller of this event, from the headers only the host sets (dohost-caller-class,
 * -id, -name). Returns 1 and fills *out for a call, 0 for an event that is not a call. */
int dohost_caller(const dohost_request *req, dohost_object_ref *out);

/* target: a call-target (abi/call.cddl); req: a request (abi/request.cddl). Returns the
 * length of a response (abi/response.cddl) under the output-buffer rule. */
DOHOST_IMPORT(call)
int32_t dohost_raw_call(const void *target, size_t target_len, const void *req, size_t req_len,
                        void *out, size_t cap);
/* Returns the length of an object-info (abi/call.cddl) under the output-buffer rule. */
DOHOST_IMPORT(object_info) int32_t dohost_raw_object_info(void *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* DOHOST_CALL_H */
