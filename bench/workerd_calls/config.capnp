# bench/calls_micro.py --workerd: one Durable Object class; "a" calls "b".
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "calls", worker = .callsWorker),
    (name = "do-storage", disk = (path = "data", writable = true)),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:8790", http = (), service = "calls") ],
);

const callsWorker :Workerd.Worker = (
  compatibilityDate = "2025-06-01",
  modules = [ (name = "worker", esModule = embed "worker.js") ],
  durableObjectNamespaces = [ (className = "Obj", uniqueKey = "bench-calls-v1") ],
  durableObjectStorage = (localDisk = "do-storage"),
  bindings = [ (name = "OBJ", durableObjectNamespace = "Obj") ],
);
