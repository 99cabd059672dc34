/*
 * sqlbench - bench/sql_http.py's dohost guest: 100-row SQL inserts and selects inside
 * one event, the same routes as bench/workerd_sql/worker.js on workerd. Deploy the class
 * with storage="sqlite". Built by tools/build_guests.py to tests/fixtures/build/sqlbench.wasm.
 *
 *   /insert?start=S&n=N   N single-row INSERTs (ids S..S+N-1), one statement each, all in
 *                         the event's transaction -> "N"
 *   /select?n=N           the first N rows by id, as JSON [{"id","name","score"}, ...]
 *                         (byte for byte what the workerd side's JSON.stringify gives)
 *   /count                the number of rows
 *   /noop                 "ok", no SQL (the floor the others are compared with)
 *   anything else         404 "no route"
 */
#include "dohost.h"
#include "json.h"
#include "sql.h"

static const char NAME[] = "a name of some length";

/* Once per activation: a read when the table exists, so the waking event stays read-only;
 * the first activation ever creates it in its first event's transaction. */
static int init(void)
{
    int32_t st = dohost_sql_exec(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'bench'", NULL, 0, NULL);
    if (st != 0)
        return st < 0 ? st : 0;
    st = dohost_sql_exec("CREATE TABLE bench("
                         "id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER)",
                         NULL, 0, NULL);
    return st < 0 ? st : 0;
}
DOHOST_EXPORT_INIT(init)

static int reply_int(int64_t v)
{
    char buf[DOHOST_I64_CHARS];
    size_t n = dohost_fmt_i64(buf, v);
    return dohost_respond(200, DOHOST_TEXT_PLAIN, buf, n);
}

static int route_insert(const dohost_request *req)
{
    int64_t n = dohost_query_int(req, "n", 100), start = dohost_query_int(req, "start", 0);
    for (int64_t id = start; id < start + n; id++) {
        dohost_sql_value p[3] = {dohost_sql_int(id), dohost_sql_text_n(NAME, sizeof NAME - 1),
                                 dohost_sql_int(id % 97)};
        int32_t st = dohost_sql_exec("INSERT INTO bench(id, name, score) VALUES (?, ?, ?)", p, 3,
                                     NULL);
        if (st < 0)
            return st;
    }
    return reply_int(n);
}

static int route_select(const dohost_request *req)
{
    dohost_sql_value p[1] = {dohost_sql_int(dohost_query_int(req, "n", 100))};
    dohost_sql_result res;
    int32_t st =
        dohost_sql_exec("SELECT id, name, score FROM bench ORDER BY id LIMIT ?", p, 1, &res);
    if (st < 0)
        return st;
    dohost_json w;
    dohost_json_init_arena(&w);
    dohost_json_array(&w);
    while ((st = dohost_sql_next(&res)) > 0) {
        dohost_json_object(&w);
        dohost_json_key(&w, "id");
        dohost_json_int(&w, res.row[0].i);
        dohost_json_key(&w, "name");
        dohost_json_str(&w, res.row[1].ptr, res.row[1].len);
        dohost_json_key(&w, "score");
        dohost_json_int(&w, res.row[2].i);
        dohost_json_end(&w);
    }
    if (st < 0)
        return st;
    dohost_json_end(&w);
    return dohost_respond_json(200, &w);
}

static int route_count(void)
{
    dohost_sql_result res;
    int32_t st = dohost_sql_exec("SELECT count(*) FROM bench", NULL, 0, &res);
    if (st < 0)
        return st;
    if ((st = dohost_sql_next(&res)) <= 0)
        return st < 0 ? st : dohost_respond_text(500, "count: no row\n");
    return reply_int(res.row[0].i);
}

int on_fetch(const dohost_request *req)
{
    if (dohost_path_is(req, "/insert"))
        return route_insert(req);
    if (dohost_path_is(req, "/select"))
        return route_select(req);
    if (dohost_path_is(req, "/count"))
        return route_count();
    if (dohost_path_is(req, "/noop"))
        return dohost_respond_text(200, "ok");
    return dohost_respond_text(404, "no route\n");
}
