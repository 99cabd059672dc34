// SQL for classes deployed with storage="sqlite" (abi/README.md, section 5 "SQL";
// abi/sql.cddl).
//
//   const res = Sql.exec("SELECT name, party FROM bookings WHERE table_no = ? AND slot = ?",
//                        [sqlInt(3), sqlText("2026-12-24T19:00")]);
//   if (res === null) return failEvent(Sql.status);  // lastError() has SQLite's message
//   for (let i = 0; i < res.rows.length; i++) {
//     const name = res.rows[i][0].text;
//     const party = res.rows[i][1].i;
//   }
//
// One call runs one statement with bound parameters inside the event's transaction: it
// sees the event's own KV and SQL writes and commits (or rolls back) with them. Failures
// (null, with the status in Sql.status): Status.SQL_ERROR (SQLite rejected the statement:
// syntax, a constraint; it undid itself and the event may go on), Status.SQL_REFUSED
// (something guests may not do: BEGIN, ATTACH, most pragmas, the host's _dohost_* tables...),
// Status.NOT_SUPPORTED (the class uses the kv backend), Status.INVALID_ARGUMENT (text above
// 100,000 bytes, more than 100 parameters, a count that does not match the placeholders),
// LIMIT_EXCEEDED, QUOTA_EXCEEDED.

import * as raw from "./raw";
import { CborType, Decoder, Encoder } from "./cbor";
import { utf8 } from "./bytes";
import { SCRATCH, outputStatus, takeOutput } from "./output";
import { Status } from "./status";

/** SQLite's storage classes. */
export enum SqlType { NULL, INT, FLOAT, TEXT, BLOB }

/** One parameter or result value; only the field of its type is meaningful. A float NaN
 *  is stored as NULL. Make parameters with sqlNull(), sqlInt(), sqlFloat(), sqlText(),
 *  sqlBlob(). */
export class SqlValue {
  type: SqlType = SqlType.NULL;
  /** INT */
  i: i64 = 0;
  /** FLOAT */
  f: f64 = 0;
  /** TEXT */
  text: string = "";
  /** BLOB */
  blob: Uint8Array = new Uint8Array(0);

  get isNull(): bool {
    return this.type == SqlType.NULL;
  }

  encode(e: Encoder): void {
    switch (this.type) {
      case SqlType.INT: e.int(this.i); break;
      case SqlType.FLOAT: e.float(this.f); break;
      case SqlType.TEXT: e.text(this.text); break;
      case SqlType.BLOB: e.bytes(this.blob); break;
      default: e.null();
    }
  }

  /** The next value of `d`; null when it is not an SQL value. */
  static decode(d: Decoder): SqlValue | null {
    const v = new SqlValue();
    switch (d.peek()) {
      case CborType.UInt:
      case CborType.NInt: v.type = SqlType.INT; v.i = d.int(); break;
      case CborType.Float: v.type = SqlType.FLOAT; v.f = d.float(); break;
      case CborType.Text: v.type = SqlType.TEXT; v.text = d.text(); break;
      case CborType.Bytes: v.type = SqlType.BLOB; v.blob = d.bytes(); break;
      case CborType.Null: d.null(); break;
      default: return null;
    }
    return v;
  }
}

export function sqlNull(): SqlValue {
  return new SqlValue();
}

export function sqlInt(v: i64): SqlValue {
  const s = new SqlValue();
  s.type = SqlType.INT;
  s.i = v;
  return s;
}

export function sqlFloat(v: f64): SqlValue {
  const s = new SqlValue();
  s.type = SqlType.FLOAT;
  s.f = v;
  return s;
}

export function sqlText(v: string): SqlValue {
  const s = new SqlValue();
  s.type = SqlType.TEXT;
  s.text = v;
  return s;
}

export function sqlBlob(v: Uint8Array): SqlValue {
  const s = new SqlValue();
  s.type = SqlType.BLOB;
  s.blob = v;
  return s;
}

/** The result of one statement. */
export class SqlResult {
  /** The result columns' names (empty for a statement that returns none). */
  columns: string[] = [];
  /** One array per row, one value per column. */
  rows: SqlValue[][] = [];
  /** What the host metered: rows returned, or SQLite's full-scan steps when more. */
  rowsRead: u64 = 0;
  /** Rows inserted, updated or deleted (triggers' included). */
  rowsWritten: u64 = 0;

  /** The index of the column with this name, or -1. */
  column(name: string): i32 {
    return this.columns.indexOf(name);
  }
}

function decodeResult(out: Uint8Array): SqlResult | null {
  const d = new Decoder(out);
  const r = new SqlResult();
  const n = d.map();
  for (let i = 0; i < n && d.ok; i++) {
    d.readKey();
    if (d.is("columns")) {
      const count = d.array();
      for (let j = 0; j < count && d.ok; j++) r.columns.push(d.text());
    } else if (d.is("rows")) {
      const count = d.array();
      for (let j = 0; j < count && d.ok; j++) {
        const width = d.array();
        const row = new Array<SqlValue>(width);
        for (let k = 0; k < width && d.ok; k++) {
          const v = SqlValue.decode(d);
          if (v === null) return null;
          row[k] = v;
        }
        r.rows.push(row);
      }
    } else if (d.is("rows_read")) r.rowsRead = d.uint();
    else if (d.is("rows_written")) r.rowsWritten = d.uint();
    else d.skip(); // sql.cddl may grow
  }
  return d.done ? r : null;
}

export class Sql {
  /** The status of the last exec: the number of rows, or a negative status. */
  static status: i32 = 0;

  /** Runs one statement with `params` bound to its placeholders (?, ?NNN, :name, @name,
   *  $name in order of appearance); null on failure (see Sql.status and lastError()).
   *  Bind values; never splice them into the text. */
  static exec(statement: string, params: SqlValue[] = []): SqlResult | null {
    const text = utf8(statement);
    const e = new Encoder(16);
    if (params.length > 0) {
      e.array(params.length);
      for (let i = 0; i < params.length; i++) params[i].encode(e);
    }
    const st = raw.sql_exec(text.dataStart, <usize>text.length, e.dataStart, <usize>e.length,
                            SCRATCH.dataStart, <usize>SCRATCH.length);
    const out = takeOutput(SCRATCH, st);
    if (out === null) {
      Sql.status = outputStatus;
      return null;
    }
    const r = decodeResult(out);
    Sql.status = r !== null ? r.rows.length : Status.SDK_DECODE;
    return r;
  }
}
