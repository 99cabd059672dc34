//! The raw imports of module `dohost` (abi/README.md section 5), one function each.
//!
//! The rest of the SDK wraps these; they are public for tests and special cases.
//! Pointers are guest memory offsets and lengths are bytes; every call returns a status
//! (>= 0 success, < 0 an error code) except `now_ms`.
//!
//! Pending in the host (importing them today gets a module refused, so they are not
//! declared here yet): `call` ("Object calls"), `sql_exec` ("SQL"). Adding one is a
//! declaration here plus a wrapper (see `alarm` in lib.rs for the pattern).

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
}
