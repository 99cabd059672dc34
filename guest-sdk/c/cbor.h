/*
 * cbor.h - a tiny CBOR (RFC 8949) encoder and decoder for dohost guests.
 *
 * Covers what the dohost ABI uses: unsigned and negative integers, byte and text
 * strings, arrays, maps, booleans, null and floats (SQL values), all with definite
 * lengths. The decoder also skips tags (so unknown map values can be ignored) but never
 * returns them. Indefinite lengths are rejected.
 *
 * No allocation and no libc: the encoder writes into a buffer you give it, the decoder
 * returns pointers into the input. Both use a "sticky error": after the first problem
 * every later call fails, so you can check once at the end.
 */
#ifndef DOHOST_CBOR_H
#define DOHOST_CBOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Encoder --------------------------------------------------------------------- */

/*
 * Writes at most `cap` bytes into `buf` but counts every byte in `len`, so a first pass
 * with buf = NULL, cap = 0 measures the exact size for a second pass.
 */
typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len; /* bytes produced so far (may exceed cap) */
} cbor_enc;

void cbor_enc_init(cbor_enc *e, void *buf, size_t cap);
/* True when everything produced so far fitted in the buffer. */
bool cbor_enc_ok(const cbor_enc *e);

void cbor_put_uint(cbor_enc *e, uint64_t v);
void cbor_put_int(cbor_enc *e, int64_t v);
void cbor_put_bstr(cbor_enc *e, const void *p, size_t n);
void cbor_put_tstr(cbor_enc *e, const char *p, size_t n);
void cbor_put_cstr(cbor_enc *e, const char *s); /* NUL-terminated text string */
void cbor_put_array(cbor_enc *e, size_t count);  /* then `count` items */
void cbor_put_map(cbor_enc *e, size_t count);    /* then `count` key/value pairs */
void cbor_put_bool(cbor_enc *e, bool v);
void cbor_put_null(cbor_enc *e);
void cbor_put_double(cbor_enc *e, double v); /* always the 8-byte form */

/* ---- Decoder --------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;   /* next byte to read */
    const uint8_t *end; /* one past the last byte of the input */
    bool err;           /* sticky: set by the first malformed or unexpected item */
} cbor_dec;

typedef enum {
    CBOR_END = 0, /* no more input (or a previous error) */
    CBOR_UINT,
    CBOR_NINT,
    CBOR_BSTR,
    CBOR_TSTR,
    CBOR_ARRAY,
    CBOR_MAP,
    CBOR_TAG,
    CBOR_BOOL,
    CBOR_NULL,
    CBOR_OTHER, /* undefined, other simple values */
    CBOR_FLOAT  /* half, single or double */
} cbor_type;

void cbor_dec_init(cbor_dec *d, const void *buf, size_t len);
/* True when no error happened and every byte was consumed. */
bool cbor_dec_done(const cbor_dec *d);
/* The type of the next item, without consuming it. */
cbor_type cbor_peek(const cbor_dec *d);

/*
 * Each getter consumes one item of the expected type and returns true, or sets the
 * sticky error and returns false (wrong type, truncated input, value out of range).
 * Strings are returned as pointers into the input; they are not NUL-terminated.
 * Array and map counts are checked against the remaining input, so a caller may
 * allocate `count` elements without trusting the input further.
 */
bool cbor_get_uint(cbor_dec *d, uint64_t *v);
bool cbor_get_int(cbor_dec *d, int64_t *v); /* uint or nint that fits in int64_t */
bool cbor_get_bstr(cbor_dec *d, const uint8_t **p, size_t *n);
bool cbor_get_tstr(cbor_dec *d, const char **p, size_t *n);
bool cbor_get_array(cbor_dec *d, size_t *count);
bool cbor_get_map(cbor_dec *d, size_t *count);
bool cbor_get_bool(cbor_dec *d, bool *v);
bool cbor_get_null(cbor_dec *d);
/* A float of any width (half, single, double), widened to double. */
bool cbor_get_double(cbor_dec *d, double *v);
/* Skips one complete item, nested containers included (iteratively: no recursion). */
bool cbor_skip(cbor_dec *d);

/* True when the text (p, n) equals the NUL-terminated string s. Handy for map keys. */
bool cbor_str_eq(const char *p, size_t n, const char *s);

#ifdef __cplusplus
}
#endif

#endif /* DOHOST_CBOR_H */
