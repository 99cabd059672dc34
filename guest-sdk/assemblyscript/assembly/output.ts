// The output-buffer rule (abi/README.md section 2): an import that produces bytes is given
// a buffer; it returns the full length n and wrote the bytes when n <= cap, otherwise the
// host keeps them as the pending result, read with result_read into n bytes.

import * as raw from "./raw";

/** The scratch buffer offered first to imports whose result size is unknown. */
export const SCRATCH = new Uint8Array(4096);

/** The status of the last takeOutput: the length, or a negative status. */
export let outputStatus: i32 = 0;

/** `status` is what the import returned for `buf`. Returns the result bytes (a copy when
 *  `buf` is the shared SCRATCH), or null with `outputStatus` < 0. */
export function takeOutput(buf: Uint8Array, status: i32): Uint8Array | null {
  outputStatus = status;
  if (status < 0) return null;
  if (status <= buf.length) {
    if (buf !== SCRATCH) return status == buf.length ? buf : buf.subarray(0, status);
    const copy = new Uint8Array(status);
    memory.copy(copy.dataStart, SCRATCH.dataStart, <usize>status);
    return copy;
  }
  const big = new Uint8Array(status);
  const st = raw.result_read(big.dataStart, <usize>status);
  if (st != status) {
    outputStatus = st < 0 ? st : -101; // SDK_DECODE: a short read
    return null;
  }
  return big;
}
