//! The raw imports of module `dohost` (abi/README.md section 5), one function each.
//!
//! The rest of the SDK wraps these; they are public for tests and special cases.
//! Pointers are guest memory offsets and lengths are bytes; every call returns a status
//! (>= 0 success, < 0 an error code) except `now_ms`.
//! Adding one is a declaration here plus a wrapper (see `alarm` in lib.rs for the
//! pattern). Rust links only the imports a module uses, so declaring one costs nothing.

#[link(wasm_import_module = "dohost")]
extern "C" {
    pub fn input_read(out: *mut u8, cap: usize) -> i32;
    pub fn response_set(ptr: *const u8, len: usize) -> i32;
    pub fn result_read(out: *mut u8, cap: usize) -> i32;
    pub fn last_error(out: *mut u8, cap: usize) -> i32;
    pub fn kv_get(key: *const u8, key_len: usize, out: *mut u8, cap: usize) -> i32;
    pub fn kv_put(key: *const u8, key_len: usize, val: *const u8, val_len: usize) -> i32;
    pub fn kv_delete(key: *const u8, key_len: usize) -> i32;
    pub fn kv_get_many(keys: *const u8, len: usize, out: *mut u8, cap: usize) -> i32;
    pub fn kv_put_many(entries: *const u8, len: usize) -> i32;
    pub fn kv_delete_many(keys: *const u8, len: usize) -> i32;
    pub fn kv_list(opts: *const u8, len: usize, out: *mut u8, cap: usize) -> i32;
    pub fn kv_delete_all() -> i32;
    pub fn log(level: i32, ptr: *const u8, len: usize) -> i32;
    pub fn now_ms() -> i64;
    pub fn random_fill(ptr: *mut u8, len: usize) -> i32;
    pub fn alarm_set(time_ms: i64) -> i32;
    /// Writes the time as a little-endian i64 (8 bytes) at `out` and returns 1, or 0.
    pub fn alarm_get(out: *mut u8) -> i32;
    pub fn alarm_delete() -> i32;
    /// `params` is an sql-params CBOR array (`params_len` 0: none); returns the length of an
    /// sql-result (abi/sql.cddl) under the output-buffer rule.
    pub fn sql_exec(
        sql: *const u8,
        sql_len: usize,
        params: *const u8,
        params_len: usize,
        out: *mut u8,
        cap: usize,
    ) -> i32;
    /// `target` is a call-target (abi/call.cddl), `req` a request; returns the length of the
    /// callee's response (abi/response.cddl) under the output-buffer rule.
    pub fn call(
        target: *const u8,
        target_len: usize,
        req: *const u8,
        req_len: usize,
        out: *mut u8,
        cap: usize,
    ) -> i32;
    /// Returns the length of an object-info (abi/call.cddl) under the output-buffer rule.
    pub fn object_info(out: *mut u8, cap: usize) -> i32;
    /// WebSockets (abi/websocket.cddl). `tags` is a ws-tags CBOR array (`tags_len` 0: no
    /// tags); returns the new connection's id (> 0). `kind` is 0 (text) or 1 (binary).
    pub fn ws_accept(tags: *const u8, tags_len: usize) -> i32;
    pub fn ws_send(conn_id: u32, kind: i32, ptr: *const u8, len: usize) -> i32;
    /// `tag_len` 0: every open connection. Returns how many it was sent to.
    pub fn ws_send_tag(
        tag: *const u8,
        tag_len: usize,
        kind: i32,
        ptr: *const u8,
        len: usize,
    ) -> i32;
    pub fn ws_close(conn_id: u32, code: i32, reason: *const u8, reason_len: usize) -> i32;
    /// Returns the length of a ws-list under the output-buffer rule (`tag_len` 0: all).
    pub fn ws_list(tag: *const u8, tag_len: usize, out: *mut u8, cap: usize) -> i32;
    /// `len` 0 removes the attachment.
    pub fn ws_attachment_set(conn_id: u32, ptr: *const u8, len: usize) -> i32;
    /// Returns the attachment's length (0: none) under the output-buffer rule.
    pub fn ws_attachment_get(conn_id: u32, out: *mut u8, cap: usize) -> i32;
    /// `req_len` 0 removes the object's auto-response pair.
    pub fn ws_auto_response(
        req: *const u8,
        req_len: usize,
        resp: *const u8,
        resp_len: usize,
    ) -> i32;
    // Bookmarks (bookmark.rs)
    pub fn bookmark_current(out: *mut u8, cap: usize) -> i32;
    pub fn bookmark_for_time(time_ms: i64, out: *mut u8, cap: usize) -> i32;
    pub fn bookmark_restore(ptr: *const u8, len: usize) -> i32;
}
