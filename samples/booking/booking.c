/*
 * booking - table bookings of one restaurant per object, kept in SQL. Deploy the class
 * with storage="sqlite".
 *
 *   POST /book  {"table": 3, "slot": "2026-12-24T19:00", "party": 4, "name": "Ada"}
 *               -> 201 {"id": 1, "table": 3, "slot": "2026-12-24T19:00", "party": 4, "name": "Ada"}
 *               -> 409 {"error": "taken"} when that table is booked for that slot
 *   GET  /bookings?date=2026-12-24
 *               -> 200 {"date": "2026-12-24", "bookings": [booking, ...]} by slot, then table
 *   GET  /tables -> 200 {"tables": [{"table": 1, "seats": 4}, ...]}
 *   bad input    -> 400 {"error": "..."}
 *
 * Schema (created by the first activation, see init below):
 *   tables(table_no INTEGER PRIMARY KEY, seats INTEGER)     12 tables, seeded once
 *   bookings(id INTEGER PRIMARY KEY, table_no, slot, party, name, created_ms,
 *            UNIQUE (table_no, slot))                       + an index on slot
 *
 * No double booking: the UNIQUE constraint decides. The insert says ON CONFLICT DO NOTHING
 * RETURNING id, so a taken slot returns no row (409) instead of an error; and an object
 * runs one event at a time, so concurrent requests for one slot are decided in turn.
 * Slots are "YYYY-MM-DDTHH:MM" text, so a day's bookings are one index range:
 * date + "T" <= slot < date + "U".
 */
#include "dohost.h"
#include "json.h"
#include "sql.h"

#define SLOT_LEN 16 /* YYYY-MM-DDTHH:MM */
#define DATE_LEN 10 /* YYYY-MM-DD */
#define MAX_NAME 100

/* ---- Schema --------------------------------------------------------------------------- */

static const char *const SCHEMA[] = {
    "CREATE TABLE IF NOT EXISTS tables("
    " table_no INTEGER PRIMARY KEY, seats INTEGER NOT NULL CHECK (seats > 0))",
    "CREATE TABLE IF NOT EXISTS bookings("
    " id INTEGER PRIMARY KEY,"
    " table_no INTEGER NOT NULL REFERENCES tables(table_no),"
    " slot TEXT NOT NULL,"
    " party INTEGER NOT NULL,"
    " name TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " UNIQUE (table_no, slot))",
    "CREATE INDEX IF NOT EXISTS bookings_by_slot ON bookings(slot)",
    /* tables 1-8 seat 4, 9-10 seat 6, 11-12 seat 8 */
    "INSERT INTO tables(table_no, seats) VALUES"
    " (1, 4), (2, 4), (3, 4), (4, 4), (5, 4), (6, 4), (7, 4), (8, 4),"
    " (9, 6), (10, 6), (11, 8), (12, 8)",
};

/* Once per activation. A read when the schema exists (the usual case), so the event that
 * woke the object stays read-only; the first activation ever creates it, in the same
 * transaction as its first event. */
static int init(void)
{
    int32_t st = dohost_sql_exec(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'bookings'", NULL, 0, NULL);
    if (st != 0)
        return st < 0 ? st : 0;
    for (size_t i = 0; i < sizeof SCHEMA / sizeof SCHEMA[0]; i++)
        if ((st = dohost_sql_exec(SCHEMA[i], NULL, 0, NULL)) < 0)
            return st;
    return 0;
}
DOHOST_EXPORT_INIT(init)

/* ---- Dates ---------------------------------------------------------------------------- */

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* "YYYY-MM-DD", a real calendar day. */
static bool valid_date(const char *s, size_t n)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, d;
    if (n < DATE_LEN || s[4] != '-' || s[7] != '-' || !digits(s, 4, &y) ||
        !digits(s + 5, 2, &m) || !digits(s + 8, 2, &d) || y < 1 || m < 1 || m > 12 || d < 1)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= days[m - 1] + (m == 2 && leap);
}

/* "YYYY-MM-DDTHH:MM" */
static bool valid_slot(const char *s, size_t n)
{
    int h, min;
    return n == SLOT_LEN && valid_date(s, DATE_LEN) && s[10] == 'T' && s[13] == ':' &&
           digits(s + 11, 2, &h) && digits(s + 14, 2, &min) && h < 24 && min < 60;
}

/* ---- Responses ------------------------------------------------------------------------ */

static int reply_error(int status, const char *message)
{
    dohost_json w;
    dohost_json_init_arena(&w);
    dohost_json_object(&w);
    dohost_json_key(&w, "error");
    dohost_json_cstr(&w, message);
    dohost_json_end(&w);
    return dohost_respond_json(status, &w);
}

static int method_not_allowed(const char *allow)
{
    static const char body[] = "{\"error\":\"method not allowed\"}";
    dohost_header h = {.name = "allow", .value = allow};
    dohost_response r = {.status = 405,
                         .content_type = "application/json",
                         .headers = &h,
                         .header_count = 1,
                         .body = body,
                         .body_len = sizeof body - 1};
    return dohost_respond_with(&r);
}

/* A booking object from a row of (id, table_no, slot, party, name). */
static void booking_json(dohost_json *w, const dohost_sql_value *row)
{
    dohost_json_object(w);
    dohost_json_key(w, "id");
    dohost_json_int(w, row[0].i);
    dohost_json_key(w, "table");
    dohost_json_int(w, row[1].i);
    dohost_json_key(w, "slot");
    dohost_json_str(w, row[2].ptr, row[2].len);
    dohost_json_key(w, "party");
    dohost_json_int(w, row[3].i);
    dohost_json_key(w, "name");
    dohost_json_str(w, row[4].ptr, row[4].len);
    dohost_json_end(w);
}

/* ---- POST /book ----------------------------------------------------------------------- */

typedef struct {
    int64_t table, party;
    dohost_bytes slot, name;
} booking;

/* 1 when the body is a valid booking, 0 after answering 400, or a negative status. */
static int32_t parse_booking(const dohost_request *req, booking *b)
{
    const void *body = req->body;
    size_t len = req->body_len;
    int32_t st = dohost_json_get_int(body, len, "table", &b->table);
    if (st == DOHOST_ERR_BAD_ENCODING)
        return reply_error(400, "the body must be a JSON object");
    if (st == DOHOST_ERR_NO_MEMORY)
        return st;
    if (st != 1)
        return reply_error(400, "table must be an integer");
    st = dohost_json_get_str(body, len, "slot", &b->slot);
    if (st == DOHOST_ERR_NO_MEMORY)
        return st;
    if (st != 1 || !valid_slot((const char *)b->slot.ptr, b->slot.len))
        return reply_error(400, "slot must be a string \"YYYY-MM-DDTHH:MM\"");
    st = dohost_json_get_int(body, len, "party", &b->party);
    if (st == DOHOST_ERR_NO_MEMORY)
        return st;
    if (st != 1 || b->party < 1)
        return reply_error(400, "party must be a positive integer");
    st = dohost_json_get_str(body, len, "name", &b->name);
    if (st == DOHOST_ERR_NO_MEMORY)
        return st;
    if (st != 1 || b->name.len == 0 || b->name.len > MAX_NAME)
        return reply_error(400, "name must be a string of 1 to 100 bytes");
    return 1;
}

/* 1 when the table exists and seats the party, 0 after answering 400, or a status. */
static int32_t check_table(const booking *b)
{
    dohost_sql_value p[1] = {dohost_sql_int(b->table)};
    dohost_sql_result res;
    int32_t st = dohost_sql_exec("SELECT seats FROM tables WHERE table_no = ?", p, 1, &res);
    if (st < 0)
        return st;
    if (st == 0)
        return reply_error(400, "no such table");
    if ((st = dohost_sql_next(&res)) < 0)
        return st;
    if (b->party > res.row[0].i)
        return reply_error(400, "the party does not fit that table");
    return 1;
}

static int book(const dohost_request *req)
{
    booking b;
    int32_t st = parse_booking(req, &b);
    if (st == 1)
        st = check_table(&b);
    if (st != 1)
        return st; /* 0: the 400 is set; < 0: fail the event */
    dohost_sql_value p[5] = {
        dohost_sql_int(b.table),   dohost_sql_text_n(b.slot.ptr, b.slot.len),
        dohost_sql_int(b.party),   dohost_sql_text_n(b.name.ptr, b.name.len),
        dohost_sql_int(dohost_now_ms()),
    };
    dohost_sql_result res;
    st = dohost_sql_exec("INSERT INTO bookings(table_no, slot, party, name, created_ms)"
                         " VALUES (?, ?, ?, ?, ?)"
                         " ON CONFLICT (table_no, slot) DO NOTHING"
                         " RETURNING id, table_no, slot, party, name",
                         p, 5, &res);
    if (st < 0)
        return st;
    if (st == 0)
        return reply_error(409, "taken");
    if ((st = dohost_sql_next(&res)) < 0)
        return st;
    dohost_json w;
    dohost_json_init_arena(&w);
    booking_json(&w, res.row);
    return dohost_respond_json(201, &w);
}

/* ---- GET /bookings, GET /tables ------------------------------------------------------- */

static int list_bookings(const dohost_request *req)
{
    dohost_bytes date;
    if (!dohost_query_get(req, "date", &date) || date.len != DATE_LEN ||
        !valid_date((const char *)date.ptr, date.len))
        return reply_error(400, "date must be given as ?date=YYYY-MM-DD");
    char lo[DATE_LEN + 1], hi[DATE_LEN + 1];
    __builtin_memcpy(lo, date.ptr, DATE_LEN);
    __builtin_memcpy(hi, date.ptr, DATE_LEN);
    lo[DATE_LEN] = 'T';
    hi[DATE_LEN] = 'U'; /* the character after 'T': every slot of the day sorts before */
    dohost_sql_value p[2] = {dohost_sql_text_n(lo, sizeof lo), dohost_sql_text_n(hi, sizeof hi)};
    dohost_sql_result res;
    int32_t st = dohost_sql_exec("SELECT id, table_no, slot, party, name FROM bookings"
                                 " WHERE slot >= ? AND slot < ? ORDER BY slot, table_no",
                                 p, 2, &res);
    if (st < 0)
        return st;
    dohost_json w;
    dohost_json_init_arena(&w);
    dohost_json_object(&w);
    dohost_json_key(&w, "date");
    dohost_json_str(&w, date.ptr, date.len);
    dohost_json_key(&w, "bookings");
    dohost_json_array(&w);
    while ((st = dohost_sql_next(&res)) > 0)
        booking_json(&w, res.row);
    if (st < 0)
        return st;
    dohost_json_end(&w);
    dohost_json_end(&w);
    return dohost_respond_json(200, &w);
}

static int list_tables(void)
{
    dohost_sql_result res;
    int32_t st =
        dohost_sql_exec("SELECT table_no, seats FROM tables ORDER BY table_no", NULL, 0, &res);
    if (st < 0)
        return st;
    dohost_json w;
    dohost_json_init_arena(&w);
    dohost_json_object(&w);
    dohost_json_key(&w, "tables");
    dohost_json_array(&w);
    while ((st = dohost_sql_next(&res)) > 0) {
        dohost_json_object(&w);
        dohost_json_key(&w, "table");
        dohost_json_int(&w, res.row[0].i);
        dohost_json_key(&w, "seats");
        dohost_json_int(&w, res.row[1].i);
        dohost_json_end(&w);
    }
    if (st < 0)
        return st;
    dohost_json_end(&w);
    dohost_json_end(&w);
    return dohost_respond_json(200, &w);
}

int on_fetch(const dohost_request *req)
{
    if (dohost_path_is(req, "/book"))
        return dohost_method_is(req, "POST") ? book(req) : method_not_allowed("POST");
    if (dohost_path_is(req, "/bookings"))
        return dohost_method_is(req, "GET") ? list_bookings(req) : method_not_allowed("GET");
    if (dohost_path_is(req, "/tables"))
        return dohost_method_is(req, "GET") ? list_tables() : method_not_allowed("GET");
    return reply_error(404, "not found");
}
