// The raw imports of module `dohost` (abi/README.md section 5), one function each.
// Pointers are guest memory addresses, lengths are bytes; every call returns a status
// (>= 0 success, < 0 an error code) except now_ms. The SDK classes wrap these.
//
// Adding one is a declaration here plus a wrapper (see alarm.ts for the pattern); asc
// keeps only the imports a module uses, so declaring one costs nothing.

// @ts-ignore: decorator
@external("dohost", "input_read")
export declare function input_read(out: usize, cap: usize): i32;
// @ts-ignore: decorator
@external("dohost", "response_set")
export declare function response_set(ptr: usize, len: usize): i32;
// @ts-ignore: decorator
@external("dohost", "result_read")
export declare function result_read(out: usize, cap: usize): i32;
// @ts-ignore: decorator
@external("dohost", "last_error")
export declare function last_error(out: usize, cap: usize): i32;
// @ts-ignore: decorator
@external("dohost", "kv_get")
export declare function kv_get(key: usize, keyLen: usize, out: usize, cap: usize): i32;
// @ts-ignore: decorator
@external("dohost", "kv_put")
export declare function kv_put(key: usize, keyLen: usize, val: usize, valLen: usize): i32;
// @ts-ignore: decorator
@external("dohost", "kv_delete")
export declare function kv_delete(key: usize, keyLen: usize): i32;
// @ts-ignore: decorator
@external("dohost", "kv_get_many")
export declare function kv_get_many(keys: usize, len: usize, out: usize, cap: usize): i32;
// @ts-ignore: decorator
@external("dohost", "kv_put_many")
export declare function kv_put_many(entries: usize, len: usize): i32;
// @ts-ignore: decorator
@external("dohost", "kv_delete_many")
export declare function kv_delete_many(keys: usize, len: usize): i32;
// @ts-ignore: decorator
@external("dohost", "kv_list")
export declare function kv_list(opts: usize, len: usize, out: usize, cap: usize): i32;
// @ts-ignore: decorator
@external("dohost", "kv_delete_all")
export declare function kv_delete_all(): i32;
// @ts-ignore: decorator
@external("dohost", "log")
export declare function log(level: i32, ptr: usize, len: usize): i32;
// @ts-ignore: decorator
@external("dohost", "now_ms")
export declare function now_ms(): i64;
// @ts-ignore: decorator
@external("dohost", "random_fill")
export declare function random_fill(ptr: usize, len: usize): i32;
// @ts-ignore: decorator
@external("dohost", "alarm_set")
export declare function alarm_set(timeMs: i64): i32;
/** Writes the time as a little-endian i64 (8 bytes) at `out` and returns 1, or 0. */
// @ts-ignore: decorator
@external("dohost", "alarm_get")
export declare function alarm_get(out: usize): i32;
// @ts-ignore: decorator
@external("dohost", "alarm_delete")
export declare function alarm_delete(): i32;
/** `params` is an sql-params CBOR array (paramsLen 0: none); returns the length of an
 *  sql-result (abi/sql.cddl) under the output-buffer rule. */
// @ts-ignore: decorator
@external("dohost", "sql_exec")
export declare function sql_exec(sql: usize, sqlLen: usize, params: usize, paramsLen: usize, out: usize, cap: usize): i32;
/** `target` is a call-target (abi/call.cddl), `req` a request; returns the length of the
 *  callee's response (abi/response.cddl) under the output-buffer rule. */
// @ts-ignore: decorator
@external("dohost", "call")
export declare function call(target: usize, targetLen: usize, req: usize, reqLen: usize, out: usize, cap: usize): i32;
/** Returns the length of an object-info (abi/call.cddl) under the output-buffer rule. */
// @ts-ignore: decorator
@external("dohost", "object_info")
export declare function object_info(out: usize, cap: usize): i32;
/** WebSockets (abi/websocket.cddl). `tags` is a ws-tags CBOR array (tagsLen 0: no tags);
 *  returns the new connection's id (> 0). */
// @ts-ignore: decorator
@external("dohost", "ws_accept")
export declare function ws_accept(tags: usize, tagsLen: usize): i32;
/** `kind` is 0 (text) or 1 (binary). */
// @ts-ignore: decorator
@external("dohost", "ws_send")
export declare function ws_send(connId: u32, kind: i32, ptr: usize, len: usize): i32;
/** tagLen 0: every open connection. Returns how many it was sent to. */
// @ts-ignore: decorator
@external("dohost", "ws_send_tag")
export declare function ws_send_tag(tag: usize, tagLen: usize, kind: i32, ptr: usize, len: usize): i32;
// @ts-ignore: decorator
@external("dohost", "ws_close")
export declare function ws_close(connId: u32, code: i32, reason: usize, reasonLen: usize): i32;
/** Returns the length of a ws-list under the output-buffer rule (tagLen 0: all). */
// @ts-ignore: decorator
@external("dohost", "ws_list")
export declare function ws_list(tag: usize, tagLen: usize, out: usize, cap: usize): i32;
/** len 0 removes the attachment. */
// @ts-ignore: decorator
@external("dohost", "ws_attachment_set")
export declare function ws_attachment_set(connId: u32, ptr: usize, len: usize): i32;
/** Returns the attachment's length (0: none) under the output-buffer rule. */
// @ts-ignore: decorator
@external("dohost", "ws_attachment_get")
export declare function ws_attachment_get(connId: u32, out: usize, cap: usize): i32;
/** reqLen 0 removes the object's auto-response pair. */
// @ts-ignore: decorator
@external("dohost", "ws_auto_response")
export declare function ws_auto_response(req: usize, reqLen: usize, resp: usize, respLen: usize): i32;
/** Bookmarks (bookmark.ts): the bookmark's length under the output-buffer rule. */
// @ts-ignore: decorator
@external("dohost", "bookmark_current")
export declare function bookmark_current(out: usize, cap: usize): i32;
// @ts-ignore: decorator
@external("dohost", "bookmark_for_time")
export declare function bookmark_for_time(timeMs: i64, out: usize, cap: usize): i32;
/** Restore at the next activation; returns 0. */
// @ts-ignore: decorator
@external("dohost", "bookmark_restore")
export declare function bookmark_restore(ptr: usize, len: usize): i32;
