/*
 * sql.h - SQL for C guests of classes deployed with storage="sqlite" (abi/README.md,
 * section 5 "SQL"; abi/sql.cddl). Link sql.c with dohost.c and cbor.c.
 *
 * One call runs one statement with bound parameters inside the event's transaction: it
 * sees the event's own KV and SQL writes and commits (or rolls back) with them.
 *
 *     dohost_sql_value params[] = {dohost_sql_int(3), dohost_sql_text("2026-12-24T19:00")};
 *     dohost_sql_result res;
 *     int32_t n = dohost_sql_exec("SELECT name, party FROM bookings"
 *                                 " WHERE table_no = ? AND slot = ?", params, 2, &res);
 *     if (n < 0)
 *         return n;                    // dohost_last_error() has SQLite's message
 *     while (dohost_sql_next(&res) > 0) {
 *         const dohost_sql_value *name = &res.row[0];   // name->ptr, name->len (UTF-8)
 *         int64_t party = res.row[1].i;
 *     }
 *
 * Everything a result holds (column names, text and blob values) lives in the event
 * arena, like other SDK results. Text values point into the result and are not
 * NUL-terminated; dohost_sql_cstr() makes a NUL-terminated copy.
 *
 * Errors: DOHOST_ERR_SQL_ERROR (SQLite rejected the statement: syntax, a constraint; the
 * statement undid itself and the event may go on), DOHOST_ERR_SQL_REFUSED (something
 * guests may not do: BEGIN/COMMIT, ATTACH, most pragmas, the host's tables...),
 * DOHOST_ERR_NOT_SUPPORTED (the class uses the kv backend), DOHOST_ERR_INVALID_ARGUMENT
 * (text above 100,000 bytes, more than 100 parameters, a count that does not match the
 * placeholders), DOHOST_ERR_QUOTA_EXCEEDED, DOHOST_ERR_LIMIT_EXCEEDED.
 */
#ifndef DOHOST_SQL_H
#define DOHOST_SQL_H

#include "dohost.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DOHOST_ERR_SQL_ERROR (-18)
#define DOHOST_ERR_SQL_REFUSED (-19)

typedef enum {
    DOHOST_SQL_NULL = 0,
    DOHOST_SQL_INT,   /* 64-bit signed: .i */
    DOHOST_SQL_FLOAT, /* double: .f */
    DOHOST_SQL_TEXT,  /* UTF-8: .ptr, .len */
    DOHOST_SQL_BLOB,  /* bytes: .ptr, .len */
} dohost_sql_type;

/* One parameter or result value; only the fields of its type are meaningful. */
typedef struct {
    dohost_sql_type type;
    int64_t i;
    double f;
    const uint8_t *ptr;
    size_t len;
} dohost_sql_value;

static inline dohost_sql_value dohost_sql_null(void)
{
    return (dohost_sql_value){.type = DOHOST_SQL_NULL};
}
static inline dohost_sql_value dohost_sql_int(int64_t v)
{
    return (dohost_sql_value){.type = DOHOST_SQL_INT, .i = v};
}
static inline dohost_sql_value dohost_sql_float(double v)
{
    return (dohost_sql_value){.type = DOHOST_SQL_FLOAT, .f = v};
}
/* A NUL-terminated string (not copied: it must live until the call returns). */
static inline dohost_sql_value dohost_sql_text(const char *s)
{
    return (dohost_sql_value){
        .type = DOHOST_SQL_TEXT, .ptr = (const uint8_t *)s, .len = dohost_strlen(s)};
}
static inline dohost_sql_value dohost_sql_text_n(const void *s, size_t n)
{
    return (dohost_sql_value){.type = DOHOST_SQL_TEXT, .ptr = (const uint8_t *)s, .len = n};
}
static inline dohost_sql_value dohost_sql_blob(const void *p, size_t n)
{
    return (dohost_sql_value){.type = DOHOST_SQL_BLOB, .ptr = (const uint8_t *)p, .len = n};
}

/* The result of one statement. Read the rows in order with dohost_sql_next(). */
typedef struct {
    size_t column_count;
    const char *const *columns; /* names, NUL-terminated */
    size_t row_count;
    uint64_t rows_read;    /* what the host metered for this statement */
    uint64_t rows_written; /* rows inserted, updated or deleted */
    dohost_sql_value *row; /* the current row (column_count values), after dohost_sql_next */
    /* private: where the next row starts */
    cbor_dec next_row;
    size_t rows_left;
} dohost_sql_result;

/* Runs one statement. `sql` is NUL-terminated; params may be NULL when nparams is 0;
 * out may be NULL when the rows are not needed. Returns the number of result rows
 * (>= 0), or a negative status. */
int32_t dohost_sql_exec(const char *sql, const dohost_sql_value *params, size_t nparams,
                        dohost_sql_result *out);
/* The same with the text's length given (it need not be NUL-terminated). */
int32_t dohost_sql_exec_n(const void *sql, size_t sql_len, const dohost_sql_value *params,
                          size_t nparams, dohost_sql_result *out);
/* Moves to the next row: 1 and res->row set, 0 after the last row, or a negative status. */
int32_t dohost_sql_next(dohost_sql_result *res);
/* The index of the column with this name, or -1. */
int dohost_sql_column(const dohost_sql_result *res, const char *name);
/* A NUL-terminated arena copy of a text (or blob) value; NULL for other types or when
 * out of memory. */
const char *dohost_sql_cstr(const dohost_sql_value *v);

DOHOST_IMPORT(sql_exec)
int32_t dohost_raw_sql_exec(const void *sql, size_t sql_len, const void *params,
                            size_t params_len, void *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* DOHOST_SQL_H */
