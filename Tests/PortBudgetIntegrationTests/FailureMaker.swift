import Foundation
import XCTest

/// A v2 cgroup of the test's own (`pbbpf-PID-N.service` below the v2 root,
/// so it names a unit), removed at deinit.
final class TestCgroup {
    let path: String
    /// The path below the v2 root, as the agent names it.
    let relative: String
    var unit: String { String(relative.dropFirst()) }
    private static let counter = Counter()

    init(file: StaticString = #filePath, line: UInt = #line) throws {
        let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"].first {
            FileManager.default.fileExists(atPath: $0 + "/cgroup.procs")
                && (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8))?
                    .contains(" \($0) ") == true
        }
        guard let root else {
            try NetworkNamespace.skip("no cgroup v2 hierarchy is mounted", file: file, line: line)
            throw XCTSkip("unreachable")
        }
        relative = "/pbbpf-\(getpid())-\(Self.counter.next()).service"
        path = root + relative
        guard mkdir(path, 0o755) == 0 else { throw Failure("mkdir \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { rmdir(path) }
}

/// Makes exact numbers of every failure kind the collector counts, and of
/// each look-alike it must not count, from python3 in a known cgroup inside
/// a namespace whose port range is 40000–40003. Reports what each call
/// returned, so a test holds the kernel's counts to what the process saw.
enum FailureMaker {
    struct Outcome {
        var pid: Int32
        /// Category → errno name ("ok" for success) → times.
        var observed: [String: [String: Int]]

        func count(_ category: String, _ result: String) -> Int { observed[category]?[result] ?? 0 }
    }

    /// Joins `cgroup`, enters `ns` (without remounting /sys) and runs the script.
    static func run(in ns: NetworkNamespace, cgroup: TestCgroup) throws -> Outcome {
        let output = Command.run(["sh", "-c", "echo $$ > \"$1/cgroup.procs\" && exec nsenter --net=/run/netns/\"$2\" python3 -c \"$3\"",
                                  "sh", cgroup.path, ns.name, script], timeout: 60)
        guard output.status == 0, let line = output.stdout.split(separator: "\n").last,
              let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let pid = object["pid"] as? Int, let observed = object["observed"] as? [String: [String: Int]] else {
            throw Failure("failure maker exited \(output.status): \(output.stderr) \(output.stdout)")
        }
        return Outcome(pid: Int32(pid), observed: observed)
    }

    static let script = #"""
import errno, json, os, socket as S

observed = {}
held = []

def note(category, call):
    try:
        call()
        result = "ok"
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e.errno))
    observed.setdefault(category, {})
    observed[category][result] = observed[category].get(result, 0) + 1

def tcp(family=S.AF_INET):
    s = S.socket(family, S.SOCK_STREAM)
    held.append(s)
    return s

def udp(family=S.AF_INET):
    s = S.socket(family, S.SOCK_DGRAM)
    held.append(s)
    return s

# Listeners on explicit ports outside the 4-port range.
for family, address in ((S.AF_INET, "127.0.0.1"), (S.AF_INET6, "::1")):
    listener = tcp(family)
    listener.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1)
    listener.bind((address, 5000))
    listener.listen(128)

# Before the range is full: listeners that got an ephemeral port, closed
# (and shut down) — their port is released on the way to CLOSE.
def port0_listeners():
    s = S.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    s.close()
    s = S.socket()
    s.listen(1)
    s.shutdown(S.SHUT_RDWR)
    s.close()
note("port0_listeners_closed", port0_listeners)

# Every port of the range toward 127.0.0.1:5000, then connect() fails.
fills = []
def fill_v4():
    s = tcp()
    s.connect(("127.0.0.1", 5000))
    fills.append(s)
for _ in range(4): note("fill_tcp_v4", fill_v4)
for _ in range(3): note("tcp_connect", lambda: tcp().connect(("127.0.0.1", 5000)))
# Toward [::1]:5000 the same ports are free again (another destination).
for _ in range(4): note("fill_tcp_v6", lambda: tcp(S.AF_INET6).connect(("::1", 5000)))
for _ in range(2): note("tcp_connect", lambda: tcp(S.AF_INET6).connect(("::1", 5000)))
# Autobinds that find no port: listen() and bind(addr, 0).
for _ in range(2): note("tcp_listen", lambda: tcp().listen(1))
for _ in range(2): note("tcp_bind0", lambda: tcp().bind(("0.0.0.0", 0)))

# UDP: every port taken, then autobind fails.
for _ in range(4): note("fill_udp", lambda: udp().bind(("0.0.0.0", 0)))
for _ in range(3): note("udp_send", lambda: udp().sendto(b"x", ("127.0.0.1", 9)))
note("udp_send", lambda: udp().sendmsg([b"x"], [], 0, ("127.0.0.1", 9)))
for _ in range(2): note("udp_connect", lambda: udp().connect(("127.0.0.1", 9)))
for _ in range(2): note("udp_bind0", lambda: udp().bind(("0.0.0.0", 0)))

# Look-alikes, none of them port exhaustion.
a, b = S.socketpair(S.AF_UNIX, S.SOCK_DGRAM)
held += [a, b]
a.setblocking(False)
def fill_unix():
    while True: a.send(b"x" * 1024)
note("unix_eagain", fill_unix)
fills[0].setblocking(False)
def fill_tcp_buffer():
    while True: fills[0].send(b"x" * 65536)
note("tcp_full_buffer", fill_tcp_buffer)
def clash():
    for _ in range(2):
        s = tcp()
        s.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 6000))
        s.connect(("127.0.0.1", 5000))
note("explicit_clash", clash)
note("explicit_inuse", lambda: tcp().bind(("127.0.0.1", 5000)))
def udp_explicit():
    udp().bind(("127.0.0.1", 7000))
    udp().bind(("127.0.0.1", 7000))
note("udp_explicit_inuse", udp_explicit)
note("tcp_refused", lambda: tcp().connect(("127.0.0.1", 9)))

print(json.dumps({"pid": os.getpid(), "observed": observed}), flush=True)
"""#
}
