#!/usr/bin/env python3
"""Minimal MongoDB wire-protocol server that replays recorded command replies.

Used by the carat MongoDB collector tests: the official Rust ``mongodb`` driver
(and pymongo) connect to it as if it were a standalone mongod, and commands such
as ``serverStatus``, ``dbStats`` or ``collStats`` are answered with Extended JSON
documents recorded from real mongod releases.

Tests start it as a subprocess, read the first stdout line ``PORT <n>`` and
connect to ``mongodb://127.0.0.1:<n>/?directConnection=true``; SIGTERM stops it
(exit status 0).  Example::

    python3 replay_server.py --fixtures tests/fixtures --port 0 \
        --server-status ss-7.0-a.json,ss-7.0-b.json \
        --repl-set-get-status rs.json --db-stats app=dbstats-app.json \
        --coll-stats app.users=collstats-users.json --user carat --password secret

Protocol support: OP_QUERY (handshake, answered with OP_REPLY) and OP_MSG (2013).
Optional SCRAM-SHA-256 authentication (saslStart/saslContinue), per connection.
``--silent-after-accept`` accepts connections but never answers (timeout tests).
One log line per request goes to stderr: ``conn <id> <command> -> ok|error``,
serverStatus lines end with ``(serverStatus #<n>)``, the count answered so far.
``--max-wire-version`` (default 21) and ``--version`` (buildInfo, default 7.0.0)
shape the handshake; unknown commands get CommandNotFound (code 59).
Only the Python standard library plus ``bson`` (shipped with pymongo) is needed.
"""
import argparse, base64, datetime, hashlib, hmac, os, signal, socket, struct, sys, threading
import bson
from bson import json_util
from bson.binary import Binary
from bson.int64 import Int64

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
MAX_MESSAGE = 48_000_000
# Commands allowed before authentication when --user is given.
NO_AUTH_NEEDED = {"hello", "isMaster", "ismaster", "saslStart", "saslContinue", "ping",
                  "buildInfo", "buildinfo", "endSessions"}
SCRAM_ITERATIONS = 4096


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def error(code, code_name, errmsg):
    return {"ok": 0.0, "errmsg": errmsg, "code": code, "codeName": code_name}


def with_ok(doc):
    """The fixture document as a reply: ok: 1.0 is added when it has no ok field."""
    return doc if "ok" in doc else {**doc, "ok": 1.0}


class Fixtures:
    """Fixture documents from the command line, plus the shared serverStatus cursor."""

    def __init__(self, args):
        self.dir = args.fixtures
        self.server_status = [self.load(f) for a in args.server_status for f in a.split(",") if f]
        self.repl = self.load(args.repl_set_get_status) if args.repl_set_get_status else None
        self.db_stats = {k: self.load(f) for k, f in map(self.pair, args.db_stats)}
        self.coll_stats = {}  # db -> {collection -> doc}
        for key, f in map(self.pair, args.coll_stats):
            db, _, coll = key.partition(".")
            if not db or not coll:
                sys.exit(f"replay_server: --coll-stats key {key!r} must be DB.COLL")
            self.coll_stats.setdefault(db, {})[coll] = self.load(f)
        self.status_count, self.lock = 0, threading.Lock()

    @staticmethod
    def pair(spec):
        key, _, path = spec.partition("=")
        if not key or not path:
            sys.exit(f"replay_server: expected NAME=file.json, got {spec!r}")
        return key, path

    def load(self, name):
        path = os.path.join(self.dir, name)
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json_util.loads(fh.read())
        except Exception as exc:  # any read/parse failure is fatal at startup
            sys.exit(f"replay_server: cannot load fixture {path}: {exc}")
        if not isinstance(doc, dict):
            sys.exit(f"replay_server: fixture {path} is not a JSON object")
        return doc

    def next_server_status(self):
        """Return (document, count): the n-th command gets the n-th doc, then the last."""
        with self.lock:
            self.status_count = n = self.status_count + 1
        if not self.server_status:
            return error(59, "CommandNotFound", "no serverStatus fixture configured"), n
        return with_ok(self.server_status[min(n, len(self.server_status)) - 1]), n


class Scram:
    """Server side of one SCRAM-SHA-256 conversation (RFC 5802 / RFC 7677)."""

    def __init__(self, user, password):
        self.user, self.password = user, password
        self.skip_empty = self.verified = False

    def start(self, payload):
        """Handle client-first; return server-first bytes or None if unacceptable."""
        gs2_flag, _authzid, bare = payload.decode("utf-8").split(",", 2)
        attrs = dict(kv.split("=", 1) for kv in bare.split(","))
        user = attrs.get("n", "").replace("=2C", ",").replace("=3D", "=")
        if gs2_flag.startswith("p") or user != self.user or "r" not in attrs:
            return None
        self.gs2_header = payload.decode("utf-8")[: -len(bare)]
        self.client_first_bare = bare
        self.nonce = attrs["r"] + base64.b64encode(os.urandom(18)).decode()
        salt = os.urandom(16)
        # SASLprep of a plain ASCII password is the password itself.
        self.salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, SCRAM_ITERATIONS)
        self.server_first = f"r={self.nonce},s={base64.b64encode(salt).decode()},i={SCRAM_ITERATIONS}"
        return self.server_first.encode()

    def finish(self, payload):
        """Handle client-final; return server-final bytes or None if the proof is wrong."""
        final = payload.decode("utf-8")
        without_proof, sep, proof_b64 = final.rpartition(",p=")
        attrs = dict(kv.split("=", 1) for kv in without_proof.split(","))
        channel_ok = base64.b64decode(attrs.get("c", "")) == self.gs2_header.encode()
        if not sep or attrs.get("r") != self.nonce or not channel_ok:
            return None
        hmac256 = lambda key, msg: hmac.new(key, msg.encode(), hashlib.sha256).digest()
        client_key = hmac256(self.salted, "Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}"
        signature = hmac256(stored_key, auth_message)
        proof = base64.b64decode(proof_b64)
        recovered = bytes(a ^ b for a, b in zip(proof, signature))
        if len(proof) != len(signature) or hashlib.sha256(recovered).digest() != stored_key:
            return None
        self.verified = True
        server_sig = hmac256(hmac256(self.salted, "Server Key"), auth_message)
        return b"v=" + base64.b64encode(server_sig)


class Connection:
    """One client connection: framing, dispatch and per-connection auth state."""

    def __init__(self, server, sock, conn_id):
        self.server, self.sock, self.id = server, sock, conn_id
        self.authenticated = server.args.user is None
        self.scram = None

    def recv_exact(self, n, eof_ok=False):
        """Read exactly n bytes; None on a clean close (eof_ok), EOFError when truncated."""
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                if eof_ok and not buf:
                    return None
                raise EOFError("truncated message")
            buf += chunk
        return bytes(buf)

    def serve(self):
        try:
            if self.server.args.silent_after_accept:
                while self.sock.recv(65536):
                    pass
                return
            while (header := self.recv_exact(16, eof_ok=True)) is not None:
                length, request_id, _resp_to, opcode = struct.unpack("<iiii", header)
                if not 16 < length <= MAX_MESSAGE:
                    raise ValueError(f"bad message length {length}")
                body = self.recv_exact(length - 16)
                if opcode == OP_QUERY:
                    self.handle_query(request_id, body)
                elif opcode == OP_MSG:
                    self.handle_msg(request_id, body)
                else:
                    raise ValueError(f"unsupported opcode {opcode}")
        except Exception as exc:  # bad input only ends this connection
            log(f"conn {self.id} closed: {type(exc).__name__}: {exc}")
        finally:
            self.server.forget(self.sock)

    def send(self, response_to, opcode, payload):
        request_id = self.server.next_request_id()
        self.sock.sendall(struct.pack("<iiii", 16 + len(payload), request_id, response_to, opcode) + payload)

    def handle_query(self, request_id, body):
        # flags int32, fullCollectionName cstring, numberToSkip int32, numberToReturn int32, query doc
        end = body.index(b"\0", 4)
        namespace = body[4:end].decode("utf-8")
        pos = end + 9
        (doc_len,) = struct.unpack_from("<i", body, pos)
        query = bson.decode(body[pos : pos + doc_len])
        if "$query" in query:  # wrapped form used together with $readPreference
            query = query["$query"]
        db, _, coll = namespace.partition(".")
        if coll != "$cmd":
            raise ValueError(f"OP_QUERY to {namespace} is not a command")
        reply = self.dispatch(query, db)
        self.send(request_id, OP_REPLY, struct.pack("<iqii", 0, 0, 0, 1) + bson.encode(reply))

    def handle_msg(self, request_id, body):
        (flags,) = struct.unpack_from("<I", body, 0)
        end = len(body) - 4 if flags & 1 else len(body)  # bit 0: trailing CRC-32C checksum
        pos, command = 4, None
        while pos < end:
            kind = body[pos]
            (size,) = struct.unpack_from("<i", body, pos + 1)
            if size < 5 or pos + 1 + size > end:
                raise ValueError("bad OP_MSG section size")
            if kind == 0:
                command = bson.decode(body[pos + 1 : pos + 1 + size])
            elif kind != 1:  # kind 1 (document sequence) is skipped: no command here needs it
                raise ValueError(f"unknown OP_MSG section kind {kind}")
            pos += 1 + size
        if command is None:
            raise ValueError("OP_MSG without a body section")
        reply = self.dispatch(command, command.get("$db", "admin"))
        if not flags & 2:  # bit 1 moreToCome: client expects no reply
            self.send(request_id, OP_MSG, struct.pack("<IB", 0, 0) + bson.encode(reply))

    def dispatch(self, cmd, db):
        name = next(iter(cmd), "")
        suffix = ""
        if not self.authenticated and name not in NO_AUTH_NEEDED:
            reply = error(13, "Unauthorized", f"command {name} requires authentication")
        elif name == "serverStatus":
            reply, count = self.server.fixtures.next_server_status()
            suffix = f" (serverStatus #{count})"
        else:
            handler = getattr(self, "cmd_" + name, None) if name.isidentifier() else None
            reply = (handler(cmd, db, name) if handler
                     else error(59, "CommandNotFound", f"no such command: '{name}'"))
        log(f"conn {self.id} {name} -> {'ok' if reply.get('ok') else 'error'}{suffix}")
        return reply

    # ----- commands -----

    def cmd_hello(self, cmd, db, name):
        args = self.server.args
        reply = {"helloOk": True}
        reply["isWritablePrimary" if name == "hello" else "ismaster"] = True
        reply.update(maxBsonObjectSize=16777216, maxMessageSizeBytes=MAX_MESSAGE,
                     maxWriteBatchSize=100000, localTime=datetime.datetime.now(datetime.timezone.utc),
                     logicalSessionTimeoutMinutes=30, connectionId=self.id, minWireVersion=0,
                     maxWireVersion=args.max_wire_version, readOnly=False)
        if "saslSupportedMechs" in cmd and args.user is not None:
            reply["saslSupportedMechs"] = ["SCRAM-SHA-256"]
        reply["ok"] = 1.0  # speculativeAuthenticate is deliberately ignored
        return reply

    cmd_isMaster = cmd_ismaster = cmd_hello

    def cmd_saslStart(self, cmd, db, name):
        mech = cmd.get("mechanism")
        if mech != "SCRAM-SHA-256":
            return error(2, "BadValue", f"Received authentication for mechanism {mech} which is not enabled")
        scram = Scram(self.server.args.user, self.server.args.password)
        try:  # the user lives in admin; a malformed client-first (ValueError) also fails
            server_first = scram.start(bytes(cmd["payload"])) if db == "admin" and scram.user else None
        except (KeyError, ValueError):
            server_first = None
        if server_first is None:
            return error(18, "AuthenticationFailed", "Authentication failed.")
        scram.skip_empty = bool((cmd.get("options") or {}).get("skipEmptyExchange"))
        self.scram = scram  # replaces any earlier conversation on this connection
        return {"conversationId": 1, "done": False, "payload": Binary(server_first), "ok": 1.0}

    def cmd_saslContinue(self, cmd, db, name):
        scram, payload = self.scram, bytes(cmd.get("payload", b""))
        if scram is None or cmd.get("conversationId") != 1:
            return error(18, "AuthenticationFailed", "Authentication failed.")
        if scram.verified:  # the empty final round when skipEmptyExchange was not requested
            self.scram, self.authenticated = None, True
            return {"conversationId": 1, "done": True, "payload": Binary(b""), "ok": 1.0}
        try:
            server_final = scram.finish(payload)
        except ValueError:  # malformed client-final message (includes bad base64)
            server_final = None
        if server_final is None:
            self.scram = None
            return error(18, "AuthenticationFailed", "Authentication failed.")
        if scram.skip_empty:
            self.scram, self.authenticated = None, True
        return {"conversationId": 1, "done": scram.skip_empty, "payload": Binary(server_final), "ok": 1.0}

    def cmd_ping(self, cmd, db, name):
        return {"ok": 1.0}

    cmd_endSessions = cmd_ping  # sessions are not tracked

    def cmd_buildInfo(self, cmd, db, name):
        version = self.server.args.version
        parts = [int(p) if p.isdigit() else 0 for p in version.split("-")[0].split(".")]
        return {"version": version, "gitVersion": "0" * 40, "versionArray": (parts + [0] * 4)[:4],
                "bits": 64, "debug": False, "maxBsonObjectSize": 16777216, "ok": 1.0}

    cmd_buildinfo = cmd_buildInfo  # lower-case aliases exist in mongod too (pymongo uses this one)

    def cmd_replSetGetStatus(self, cmd, db, name):
        repl = self.server.fixtures.repl
        if repl is None:
            return error(76, "NoReplicationEnabled", "not running with --replSet")
        return with_ok(repl)

    def cmd_listDatabases(self, cmd, db, name):
        fx = self.server.fixtures
        names = sorted(set(fx.db_stats) | set(fx.coll_stats) | {"admin"})
        if cmd.get("nameOnly"):
            return {"databases": [{"name": n} for n in names], "ok": 1.0}
        dbs = [{"name": n, "sizeOnDisk": Int64(fx.db_stats.get(n, {}).get("storageSize", 40960)),
                "empty": False} for n in names]
        total = sum(int(d["sizeOnDisk"]) for d in dbs)
        return {"databases": dbs, "totalSize": Int64(total), "totalSizeMb": Int64(total >> 20), "ok": 1.0}

    def cmd_dbStats(self, cmd, db, name):
        doc = self.server.fixtures.db_stats.get(db)
        if doc is None:  # mongod reports zeros for a database that does not exist
            doc = {"db": db, "collections": 0, "views": 0, "objects": 0, "avgObjSize": 0, "dataSize": 0,
                   "storageSize": 0, "indexes": 0, "indexSize": 0, "totalSize": 0, "scaleFactor": 1}
        return with_ok(doc)

    cmd_dbstats = cmd_dbStats

    def cmd_listCollections(self, cmd, db, name):
        wanted = (cmd.get("filter") or {}).get("name")
        batch = []
        for coll in sorted(self.server.fixtures.coll_stats.get(db, {})):
            if isinstance(wanted, str) and wanted != coll:
                continue
            entry = {"name": coll, "type": "collection"}
            if not cmd.get("nameOnly"):
                entry.update(options={}, info={"readOnly": False},
                             idIndex={"v": 2, "key": {"_id": 1}, "name": "_id_"})
            batch.append(entry)
        cursor = {"id": Int64(0), "ns": f"{db}.$cmd.listCollections", "firstBatch": batch}
        return {"cursor": cursor, "ok": 1.0}

    def cmd_collStats(self, cmd, db, name):
        coll = cmd.get(name)
        doc = self.server.fixtures.coll_stats.get(db, {}).get(coll)
        if doc is None:
            return error(26, "NamespaceNotFound", f"Collection [{db}.{coll}] not found.")
        return with_ok(doc)

    cmd_collstats = cmd_collStats


class Server:
    """Listener, connection registry and shared state."""

    def __init__(self, args):
        self.args, self.fixtures = args, Fixtures(args)
        self.lock, self.sockets, self.request_id = threading.Lock(), set(), 0
        self.stop = threading.Event()

    def next_request_id(self):
        with self.lock:
            self.request_id += 1
            return self.request_id

    def forget(self, sock):
        with self.lock:
            self.sockets.discard(sock)
        sock.close()

    def run(self):
        listener = socket.create_server(("127.0.0.1", self.args.port))
        listener.settimeout(0.2)  # poll so SIGTERM/SIGINT are noticed promptly
        print(f"PORT {listener.getsockname()[1]}", flush=True)
        conn_ids = 0
        while not self.stop.is_set():
            try:
                sock, _ = listener.accept()
            except OSError as exc:  # includes the 0.2 s poll timeout
                if not isinstance(exc, TimeoutError):
                    log(f"accept failed: {exc}")
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn_ids += 1
            with self.lock:
                self.sockets.add(sock)
            conn = Connection(self, sock, conn_ids)
            threading.Thread(target=conn.serve, name=f"conn-{conn_ids}", daemon=True).start()
        listener.close()
        with self.lock:
            for sock in list(self.sockets):
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the connection threads
                except OSError:
                    pass


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fixtures", required=True, help="directory the fixture file names are relative to")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = any free port)")
    p.add_argument("--server-status", action="append", default=[], help="a.json,b.json: replayed in turn")
    p.add_argument("--repl-set-get-status", help="replSetGetStatus reply")
    p.add_argument("--db-stats", action="extend", nargs="+", default=[], metavar="DB=FILE")
    p.add_argument("--coll-stats", action="extend", nargs="+", default=[], metavar="DB.COLL=FILE")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--max-wire-version", type=int, default=21)
    p.add_argument("--version", default="7.0.0", help="buildInfo version string")
    p.add_argument("--silent-after-accept", action="store_true", help="accept and read, never answer")
    args = p.parse_args()
    if (args.user is None) != (args.password is None):
        p.error("--user and --password go together")
    server = Server(args)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.stop.set())
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
