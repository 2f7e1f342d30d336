import Foundation
import PortBudgetCore
import PortBudgetLinux
import XCTest

/// A private network namespace where real daemons run as systemd would run
/// them: each in a cgroup named like its unit (below a slice of this test's
/// own), entered with `nsenter --net` so the host's cgroup mount stays
/// visible. The agent measures it from the host (`check --netns`), as an
/// operator would. Every process in those cgroups is killed at teardown.
final class ReplayHost {
    let ns: NetworkNamespace
    let cgroupRoot: String
    /// The slice below the v2 root ("/pbreplay-PID-N.slice").
    let slice: String
    let directory: URL
    private var units: [String] = []
    private var processes: [HeldProcess] = []
    private static let counter = Counter()

    init(range: (Int, Int), twReuse: Int? = nil, needs programs: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        for program in programs where !FileManager.default.isExecutableFile(atPath: program) {
            try NetworkNamespace.skip("\(program) is not installed (scripts/ensure-deps test installs it)", file: file, line: line)
        }
        ns = try NetworkNamespace(range: range, twReuse: twReuse, file: file, line: line)
        guard let root = CgroupResolver(procfs: ProcFS()).root else {
            try NetworkNamespace.skip("no cgroup v2 hierarchy to put the daemons in", file: file, line: line)
            throw XCTSkip("unreachable")
        }
        cgroupRoot = root
        slice = "/pbreplay-\(getpid())-\(Self.counter.next()).slice"
        try FileManager.default.createDirectory(atPath: root + slice, withIntermediateDirectories: true)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(String(slice.dropFirst()))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    deinit {
        for unit in units {
            let path = cgroupRoot + slice + "/" + unit
            try? "1".write(toFile: path + "/cgroup.kill", atomically: false, encoding: .utf8)
        }
        for process in processes { process.release() }
        for unit in units {
            let path = cgroupRoot + slice + "/" + unit
            let deadline = Date().addingTimeInterval(5)
            while rmdir(path) != 0 && errno == EBUSY && Date() < deadline { usleep(20_000) }
        }
        rmdir(cgroupRoot + slice)
        try? FileManager.default.removeItem(at: directory)
    }

    /// Starts `arguments` in the namespace inside the cgroup `<slice>/<unit>`
    /// (joined before the program runs, so its sockets carry that cgroup).
    @discardableResult
    func start(unit: String, _ arguments: [String]) throws -> HeldProcess {
        let path = cgroupRoot + slice + "/" + unit
        if !units.contains(unit) {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            units.append(unit)
        }
        // The shell stays the direct child rather than exec'ing the daemon:
        // Foundation takes a child that closes every inherited descriptor
        // (dante does) for exited and then blocks reaping it, stalling every
        // other child's exit. The cgroup's kill stops both at teardown.
        let process = try HeldProcess(["sh", "-c", "echo $$ > \"$0/cgroup.procs\" && nsenter --net=/run/netns/\(ns.name) \"$@\"",
                                       path] + arguments)
        processes.append(process)
        return process
    }

    /// Starts a helper in the namespace (no cgroup of its own: clients, probes).
    func helper(_ arguments: [String]) throws -> HeldProcess {
        let process = try HeldProcess(["ip", "netns", "exec", ns.name] + arguments)
        processes.append(process)
        return process
    }

    /// Writes a file in this replay's directory and returns its path.
    func file(_ name: String, _ text: String) throws -> String {
        let url = directory.appendingPathComponent(name)
        // Configuration parsers (HAProxy's) want the last line ended.
        try (text.hasSuffix("\n") ? text : text + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    /// `portbudget check --netns NAME --json --top 0 --processes`, run from the host.
    func check() throws -> (report: PortBudgetReport, status: Int32) {
        let output = Command.run([Binaries.portbudget, "check", "--netns", ns.name, "--json", "--top", "0", "--processes"])
        guard [0, 1, 2].contains(output.status) else { throw Failure("check exited \(output.status): \(output.stderr)") }
        return (try JSONDecoder().decode(PortBudgetReport.self, from: Data(output.stdout.utf8)), output.status)
    }

    /// Waits until `probe` holds, for up to `timeout` seconds; the failure
    /// carries what `of` printed (a daemon's own words on why it did not).
    func wait(_ what: String, timeout: TimeInterval = 15, of process: HeldProcess? = nil, _ probe: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !probe() {
            guard Date() < deadline else {
                let said = process.map { ": " + ($0.stdoutText() + $0.stderrText()).suffix(1500) } ?? ""
                throw Failure("timed out waiting for \(what)\(said)")
            }
            usleep(50_000)
        }
    }

    /// Lines `ss` prints for `filter` (e.g. ["-tanH", "dst", "10.77.0.1:9000"]).
    func ss(_ arguments: [String]) -> [Substring] {
        ns.run(["ss"] + arguments).stdout.split(separator: "\n")
    }

    /// Distinct local ports in `low...high` that `ss` shows for a protocol ("-t" or "-u").
    func distinctLocalPorts(_ proto: String, _ low: Int, _ high: Int) -> Int {
        Set(ss([proto + "anH"]).compactMap { line -> Int? in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 4, let colon = fields[3].lastIndex(of: ":"), let port = Int(fields[3][fields[3].index(after: colon)...])
            else { return nil }
            return (low...high).contains(port) ? port : nil
        }).count
    }

    /// The single calls `ReplayScripts.calls` makes, each in a fresh socket:
    /// "ok" or the errno's name per call.
    func calls(_ calls: [String]) throws -> [String: String] {
        let output = ns.run(["python3", "-c", ReplayScripts.calls] + calls)
        guard let object = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: String] else {
            throw Failure("calls \(calls) printed nothing: \(output.stderr)")
        }
        return object
    }

    /// Prints what the agent said, for the suite's log (and the closing note).
    func log(_ replay: String, _ report: PortBudgetReport) {
        print("replay \(replay): \(report.verdict)")
        for f in report.findings {
            print("  \(f.severity.rawValue) \(f.id.rawValue): \(f.fix.prefix(160))…")
        }
    }
}

extension PortBudgetReport {
    func group(_ peerIP: String, _ peerPort: Int) -> Group? {
        tcp.groups.first { $0.peerIP == peerIP && $0.peerPort == peerPort }
    }
}

/// The small Python programs the replays drive.
enum ReplayScripts {
    /// Listens on the given ports of argv[1] and accepts every connection,
    /// keeping it open; prints "ready".
    static let acceptAll = """
        import selectors, socket, sys
        sel = selectors.DefaultSelector(); kept = []
        for port in sys.argv[2:]:
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((sys.argv[1], int(port))); s.listen(4096); sel.register(s, selectors.EVENT_READ)
        print("ready", flush=True)
        while True:
            for key, _ in sel.select():
                kept.append(key.fileobj.accept()[0])
        """

    /// argv: destination host, port, count, first source port. Connects
    /// `count` clients from explicit source ports (outside the range, so
    /// only the proxy's side spends the range), prints "ready", holds them
    /// until standard input closes.
    static let clients = """
        import socket, sys
        host, port, count, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        kept = []
        for i in range(count):
            c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            c.bind((host, base + i)); c.connect((host, port)); kept.append(c)
        print("ready", flush=True); sys.stdin.read()
        """

    /// An HTTP/1.1 backend on argv[1]:argv[2] that answers every request and
    /// keeps the connection until the client closes it — so a proxy without
    /// upstream keep-alive, closing first, keeps the TIME_WAIT. "/slow" is
    /// answered only when the backend exits (a request in flight).
    static let keepAliveBackend = """
        import socket, sys, threading
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(4096)
        never = threading.Event()
        def serve(c):
            buf = b""
            while True:
                data = c.recv(4096)
                if not data: break
                buf += data
                while b"\\r\\n\\r\\n" in buf:
                    head, buf = buf.split(b"\\r\\n\\r\\n", 1)
                    if b" /slow " in head.split(b"\\r\\n")[0]: never.wait()
                    c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\nContent-Type: text/plain\\r\\n\\r\\nok\\n")
            c.close()
        print("ready", flush=True)
        while True:
            c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
        """

    /// One SOCKS5 UDP ASSOCIATE through argv[1]:1080 from explicit client
    /// ports argv[2] (TCP) and argv[2]+1 (UDP), outside the range; sends one
    /// datagram through the relay to argv[1]:5353 so the server opens its
    /// outside socket too. Prints "ok" or "refused N"; holds until stdin closes.
    static let socksUDPAssociate = """
        import socket, struct, sys
        host, base = sys.argv[1], int(sys.argv[2])
        t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((host, base)); t.connect((host, 1080))
        t.sendall(b"\\x05\\x01\\x00"); assert t.recv(2) == b"\\x05\\x00"
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((host, base + 1))
        t.sendall(b"\\x05\\x03\\x00\\x01" + socket.inet_aton(host) + struct.pack(">H", base + 1))
        reply = t.recv(10)
        if len(reply) < 10 or reply[1] != 0:
            print("refused", reply[1] if len(reply) > 1 else -1, flush=True); sys.stdin.read(); sys.exit()
        relay = (socket.inet_ntoa(reply[4:8]), struct.unpack(">H", reply[8:10])[0])
        u.sendto(b"\\x00\\x00\\x00\\x01" + socket.inet_aton(host) + struct.pack(">H", 5353) + b"q", relay)
        print("ok", flush=True); sys.stdin.read()
        """

    /// argv: "tcp-bind"|"udp-sendto", address. Repeats bind(address, 0) (TCP)
    /// or an unbound UDP socket's sendto(address:5353) until the kernel
    /// refuses, holding every socket; prints {"made":N,"error":"ERRNO"}.
    static let untilRefused = """
        import errno, json, socket, sys
        kind, addr = sys.argv[1], sys.argv[2]
        kept, error = [], None
        while len(kept) < 70000:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp-bind" else socket.SOCK_DGRAM)
            try:
                if kind == "tcp-bind": s.bind((addr, 0))
                else: s.sendto(b"x", (addr, 5353))
            except OSError as e:
                error = errno.errorcode.get(e.errno, str(e.errno)); break
            kept.append(s)
        print(json.dumps({"made": len(kept), "error": error}), flush=True); sys.stdin.read()
        """

    /// Each argument is one call on a fresh socket, "op:host:port":
    /// connect (TCP), bind (TCP), listen (TCP, never bound), udp-bind,
    /// udp-sendto. Prints {"call": "ok" | "ERRNO"} as JSON.
    static let calls = """
        import errno, json, socket, sys
        out, kept = {}, []
        for call in sys.argv[1:]:
            op, _, target = call.partition(":")
            host, _, port = target.rpartition(":")
            udp = op.startswith("udp-")
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
            # A timeout would turn UDP's EAGAIN into a wait for writability.
            if not udp: s.settimeout(5)
            try:
                if op == "connect": s.connect((host, int(port)))
                elif op in ("bind", "udp-bind"): s.bind((host, int(port)))
                elif op == "listen": s.listen(1)
                elif op == "udp-sendto": s.sendto(b"x", (host, int(port)))
                out[call] = "ok"
            except OSError as e:
                out[call] = errno.errorcode.get(e.errno, str(e.errno))
            kept.append(s)
        print(json.dumps(out))
        """

    /// Connects through IP_BIND_ADDRESS_NO_PORT + bind(argv[1], 0) +
    /// connect(), `argv[2]` connections per destination port argv[3:], as a
    /// proxy with a source address does: the port is chosen at connect().
    /// Prints "ready"; holds until stdin closes.
    static let bindNoPortConnects = """
        import socket, sys
        host, per = sys.argv[1], int(sys.argv[2])
        kept = []
        for port in sys.argv[3:]:
            for _ in range(per):
                s = socket.socket(); s.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
                s.bind((host, 0)); s.connect((host, int(port))); kept.append(s)
        print("ready", flush=True); sys.stdin.read()
        """
}
