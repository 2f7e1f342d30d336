import CMNL
import Glibc

/// `portbudget-bench namespaces-floor`: the floor across many network
/// namespaces, as a long-running process driven line by line on stdin, so
/// that — like the agent under `serve --all-namespaces` — it makes each
/// namespace's SOCK_DIAG socket once and keeps it across dumps:
///
///     add NAME PATH   open PATH, enter it with setns(2) on a thread of its
///                     own, make the netlink socket there    → "ok NAME"
///     del NAME        close that socket                       → "ok NAME"
///     dump            the floor's four dumps (TCP, UDP × IPv4, IPv6) in every
///                     namespace, counting messages only       → one "ns NAME
///                     tcp=T messages=M seconds=S" line each, then "dump
///                     namespaces=K messages=M seconds=S"
///     walks           each TCP table walk alone (`TCPWalk`) in every
///                     namespace → one "walks NAME listeners=S
///                     established=S bind=S" line each, then "walked"
///
/// A netlink socket stays in the namespace it was made in, so the dumps
/// themselves run on the main thread, one namespace after another.
enum NamespacesFloor {
    struct Member {
        var name: String
        var nl: OpaquePointer
    }

    static func main() throws {
        var members: [Member] = []
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: FloorDump.bufferSize, alignment: 8)
        defer { buffer.deallocate() }
        var seq = UInt32(truncatingIfNeeded: time(nil))
        var input = LineReader(fd: 0)
        while let line = input.next() {
            let words = line.split(separator: " ", maxSplits: 2).map(String.init)
            switch words.first {
            case "add" where words.count == 3:
                do {
                    members.append(Member(name: words[1], nl: try openSockDiag(in: words[2])))
                    writeAll(1, "ok \(words[1])\n")
                } catch {
                    writeAll(1, "error \(words[1]): \(error)\n")
                }
            case "del" where words.count >= 2:
                if let i = members.firstIndex(where: { $0.name == words[1] }) {
                    mnl_socket_close(members[i].nl)
                    members.remove(at: i)
                }
                writeAll(1, "ok \(words[1])\n")
            case "dump":
                var out = ""
                var total = 0
                let start = monotonicSeconds(), cpu0 = cpuSeconds()
                for member in members {
                    let t0 = monotonicSeconds()
                    let counts = try FloorDump.dump(member.nl, buffer: buffer, seq: &seq)
                    let seconds = monotonicSeconds() - t0
                    total += counts.total
                    out += "ns \(member.name) tcp=\(counts.perDump[0] + counts.perDump[1]) messages=\(counts.total) seconds=\(seconds)\n"
                }
                out += "dump namespaces=\(members.count) messages=\(total) seconds=\(monotonicSeconds() - start) cpu=\(cpuSeconds() - cpu0)\n"
                writeAll(1, out)
            case "walks":
                var out = ""
                for member in members {
                    out += "walks \(member.name)"
                    for walk in TCPWalk.allCases {
                        out += " \(walk.rawValue)=\(try walk.time(member.nl, buffer: buffer, seq: &seq))"
                    }
                    out += "\n"
                }
                writeAll(1, out + "walked\n")
            default:
                writeAll(1, "error unknown command: \(line)\n")
            }
        }
        for member in members { mnl_socket_close(member.nl) }
    }

    /// User + system CPU of this process so far: most of a dump's is the
    /// kernel's, walking its tables.
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    /// Opens the namespace file, then on a short-lived thread enters it and
    /// makes the NETLINK_SOCK_DIAG socket there; this thread never moves.
    static func openSockDiag(in path: String) throws -> OpaquePointer {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BenchError("open \(path): errno \(errno)") }
        defer { close(fd) }
        final class Box {
            let fd: Int32
            var nl: OpaquePointer? = nil
            var error: String? = nil
            init(fd: Int32) { self.fd = fd }
        }
        let box = Box(fd: fd)
        let context = Unmanaged.passRetained(box).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeUnretainedValue()
            if setNetworkNamespace(box.fd) != 0 {
                box.error = "setns: errno \(errno)"
            } else if let nl = pb_open_netlink(NETLINK_SOCK_DIAG) {
                box.nl = nl
            } else {
                box.error = "socket(NETLINK_SOCK_DIAG): errno \(pb_errno())"
            }
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(context).release()
            throw BenchError("pthread_create: \(rc)")
        }
        pthread_join(thread, nil)
        Unmanaged<Box>.fromOpaque(context).release()
        guard let nl = box.nl else { throw BenchError("\(path): \(box.error ?? "no socket")") }
        return nl
    }
}

/// Lines from a descriptor, without Foundation.
struct LineReader {
    let fd: Int32
    private var pending: [UInt8] = []
    private var eof = false

    init(fd: Int32) { self.fd = fd }

    mutating func next() -> String? {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let line = pending.takeLine() { return line }
            if eof {
                guard !pending.isEmpty else { return nil }
                defer { pending = [] }
                return String(decoding: pending, as: UTF8.self)
            }
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { eof = true; continue }
            pending += chunk[0..<n]
        }
    }
}
