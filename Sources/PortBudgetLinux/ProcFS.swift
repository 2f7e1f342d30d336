import PortBudgetCore
import SystemPackage

/// A file under the procfs root could not be read.
public struct ProcFSError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let errno: Errno

    public var description: String { "cannot read \(path): \(errno)" }
}

/// Reads files below a procfs mount point (`--procfs`, default /proc), so
/// tests and per-namespace collection can point it elsewhere. Linux only.
public struct ProcFS: Sendable {
    public let root: String

    public init(root: String = "/proc") {
        self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
    }

    public func path(_ relative: String) -> String { root + "/" + relative }

    /// The whole file as text; procfs files report size 0, so read until EOF.
    public func read(_ relative: String) throws -> String {
        let full = path(relative)
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath(full), .readOnly, options: [.closeOnExec])
        } catch let errno as Errno {
            throw ProcFSError(path: full, errno: errno)
        }
        defer { try? fd.close() }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n: Int
            do {
                n = try chunk.withUnsafeMutableBytes { try fd.read(into: $0, retryOnInterrupt: true) }
            } catch let errno as Errno {
                throw ProcFSError(path: full, errno: errno)
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            // /proc/net/netstat is a few KiB; a file that keeps growing is not procfs.
            if bytes.count > 16 << 20 { throw ProcFSError(path: full, errno: .fileTooLarge) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Like `read`, but nil when the file does not exist (a sysctl an older kernel lacks).
    public func readIfPresent(_ relative: String) throws -> String? {
        do {
            return try read(relative)
        } catch let error as ProcFSError where error.errno == .noSuchFileOrDirectory {
            return nil
        }
    }

    /// Reads and parses the port sysctls of the namespace this procfs shows.
    public func portSysctls() throws -> PortSysctls {
        let base = "sys/net/ipv4/"
        let range = try SysctlParser.portRange(try read(base + "ip_local_port_range"),
                                               file: path(base + "ip_local_port_range"))
        let reserved = try SysctlParser.reservedPorts(try read(base + "ip_local_reserved_ports"),
                                                      file: path(base + "ip_local_reserved_ports"))
        func integer(_ name: String) throws -> Int {
            try SysctlParser.integer(try read(base + name), file: path(base + name))
        }
        let delay = try readIfPresent(base + "tcp_tw_reuse_delay").map {
            try SysctlParser.integer($0, file: path(base + "tcp_tw_reuse_delay"))
        }
        return PortSysctls(
            rangeLow: range.low, rangeHigh: range.high, reserved: reserved,
            tcpTwReuse: try integer("tcp_tw_reuse"), tcpTimestamps: try integer("tcp_timestamps"),
            tcpFinTimeoutSeconds: try integer("tcp_fin_timeout"), tcpTwReuseDelayMs: delay)
    }

    /// Reads one /proc/net statistics file into a table.
    public func netTable(_ source: KernelCounter.Source) throws -> ProcNetParser.Table {
        let relative = "net/" + source.rawValue
        let text = try read(relative)
        switch source {
        case .sockstat, .sockstat6: return try ProcNetParser.sockstat(text, file: path(relative))
        case .snmp, .netstat: return try ProcNetParser.pairedTable(text, file: path(relative))
        }
    }
}
