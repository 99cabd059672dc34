# bench/ws_fanout.py --workerd: one Durable Object class (the chat room's WebSocket part).
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "ws", worker = .wsWorker),
    (name = "do-storage", disk = (path = "data", writable = true)),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:8791", http = (), service = "ws") ],
);

const wsWorker :Workerd.Worker = (
  compatibilityDate = "2025-06-01",
  modules = [ (name = "worker", esModule = embed "worker.js") ],
  durableObjectNamespaces = [ (className = "Room", uniqueKey = "bench-ws-v1") ],
  durableObjectStorage = (localDisk = "do-storage"),
  bindings = [ (name = "ROOM", durableObjectNamespace = "Room") ],
);
