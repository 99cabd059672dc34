# bench/sql_http.py: one SQLite-backed Durable Object class (enableSql), storage on local
# disk; routes in worker.js. The address and the storage folder are set on the command line.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "sql", worker = .sqlWorker),
    (name = "do-storage", disk = (path = "data", writable = true)),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:8791", http = (), service = "sql") ],
);

const sqlWorker :Workerd.Worker = (
  compatibilityDate = "2025-06-01",
  modules = [ (name = "worker", esModule = embed "worker.js") ],
  durableObjectNamespaces = [
    (className = "SqlBench", uniqueKey = "bench-sql-v1", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "do-storage"),
  bindings = [ (name = "SQLBENCH", durableObjectNamespace = "SqlBench") ],
);
