#if canImport(Glibc)
import Glibc
#endif
import PortBudgetCore
import SystemPackage

/// A file under the procfs root could not be read.
public struct ProcFSError: Error, CustomStringConvertible, Sendable {
    public let path: String
    /// The system call's error, or nil when the file is not one the agent reads (see `reason`).
    public let errno: Errno?
    let reason: String?

    public init(path: String, errno: Errno) {
        self.path = path
        self.errno = errno
        self.reason = nil
    }

    public init(path: String, reason: String) {
        self.path = path
        self.errno = nil
        self.reason = reason
    }

    public var description: String {
        if let errno { return "cannot read \(path): \(errno)" }
        return "cannot read \(path): \(reason ?? "unreadable")"
    }
}

/// Reads files below a procfs mount point (`--procfs`, default /proc), so
/// tests and per-namespace collection can point it elsewhere. Linux only.
public struct ProcFS: Sendable {
    public let root: String
    /// Read `net/…` through `thread-self/net/…`: `/proc/net` follows the
    /// process's main thread, so a thread that entered another network
    /// namespace with setns() must name its own view. (`sys/net/…` already
    /// follows the reading thread.)
    public let netOfCallingThread: Bool
    /// One namespace's files, opened from inside it once (`--all-namespaces`):
    /// reads go to these descriptors, whichever namespace the reader is in.
    public let pinned: PinnedFiles?

    public init(root: String = "/proc", netOfCallingThread: Bool = false, pinned: PinnedFiles? = nil) {
        self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
        self.netOfCallingThread = netOfCallingThread
        self.pinned = pinned
    }

    /// Every file a collection reads that belongs to the reader's network
    /// namespace: what `PinnedFiles` opens per namespace.
    public static let namespaceFiles: [String] =
        ["ip_local_port_range", "ip_local_reserved_ports", "tcp_tw_reuse", "tcp_timestamps", "tcp_fin_timeout",
         "tcp_tw_reuse_delay"].map { "sys/net/ipv4/" + $0 } + KernelCounter.Source.allCases.map(relative)

    public func path(_ relative: String) -> String {
        netOfCallingThread && relative.hasPrefix("net/") ? root + "/thread-self/" + relative : root + "/" + relative
    }

    /// Files above this are refused: /proc/net/netstat, the largest file
    /// read, is a few KiB, so a file that keeps growing is not procfs.
    public static let maximumFileBytes = 16 << 20

    /// The whole file as text; procfs files report size 0, so read until EOF.
    ///
    /// Only regular files are read, and the open never blocks: O_NONBLOCK
    /// makes opening a FIFO (which would wait for a writer) return at once,
    /// and the fstat check then refuses it, as it refuses devices, sockets
    /// and directories. Every procfs and sysfs file is a regular file, so
    /// nothing real is lost. O_NOCTTY keeps a terminal from becoming ours.
    public func read(_ relative: String) throws -> String {
        if let pinned { return try pinned.read(relative) }
        let full = path(relative)
        let fd = try Self.openRegular(full)
        defer { try? fd.close() }
        return try Self.readAll(fd, path: full, fromStart: false, firstRead: Self.firstReadBytes(relative))
    }

    /// Opens `full` for reading if it is a regular file. With `directory`,
    /// opens its `leaf` relative to it: one path component looked up
    /// instead of the whole walk, which in /proc/sys/net and
    /// /proc/thread-self/net is a lookup per namespace, not a cached one.
    static func openRegular(_ full: String, in directory: (fd: FileDescriptor, leaf: String)? = nil) throws -> FileDescriptor {
        let fd: FileDescriptor
        do {
            if let directory {
                let raw = directory.leaf.withCString {
                    openat(directory.fd.rawValue, $0, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
                }
                guard raw >= 0 else { throw Errno(rawValue: errno) }
                fd = FileDescriptor(rawValue: raw)
            } else {
                fd = try FileDescriptor.open(FilePath(full), .readOnly,
                                             options: [.nonBlocking, .closeOnExec, Self.noControllingTerminal])
            }
        } catch let errno as Errno {
            throw ProcFSError(path: full, errno: errno)
        }
        let type: FileType
        do {
            type = try fd.stat().type
        } catch {
            try? fd.close()
            throw ProcFSError(path: full, errno: error)
        }
        guard type == .regular else {
            try? fd.close()
            throw ProcFSError(path: full, reason: "is \(Self.describe(type)), not a regular file")
        }
        return fd
    }

    /// Reads to EOF; `fromStart` reads a kept descriptor again from offset 0
    /// (procfs and sysctl files regenerate their text on each read from 0).
    static func readAll(_ fd: FileDescriptor, path full: String, fromStart: Bool, firstRead: Int) throws -> String {
        // Straight into one buffer, grown only for a file that fills it (the
        // agent's files are a few KiB): this runs for a dozen files in every
        // namespace on every collection.
        var bytes = [UInt8](repeating: 0, count: firstRead)
        var count = 0
        while true {
            if count == bytes.count {
                // Doubled, but never past one byte more than a file may hold.
                bytes.append(contentsOf: repeatElement(0, count: min(bytes.count, Self.maximumFileBytes + 1 - count)))
            }
            let n: Int
            do {
                n = try bytes.withUnsafeMutableBytes { buffer in
                    let free = UnsafeMutableRawBufferPointer(rebasing: buffer[count...])
                    return fromStart ? try fd.read(fromAbsoluteOffset: Int64(count), into: free, retryOnInterrupt: true)
                        : try fd.read(into: free, retryOnInterrupt: true)
                }
            } catch let errno as Errno {
                throw ProcFSError(path: full, errno: errno)
            }
            if n == 0 { break }
            count += n
            if count > Self.maximumFileBytes { throw ProcFSError(path: full, errno: .fileTooLarge) }
        }
        return bytes.withUnsafeBufferPointer { String(decoding: UnsafeBufferPointer(rebasing: $0[..<count]), as: UTF8.self) }
    }

    /// The first read's buffer: the largest file read, /proc/net/netstat, is about 4 KiB.
    static let readBufferBytes = 8192
    /// The first read's buffer for a sysctl: one line, a few bytes. The
    /// kernel allocates and zeroes a buffer the size of every sysctl read,
    /// the one that finds the end included, so a larger one costs each read.
    static let sysctlReadBytes = 256

    /// How many bytes the first read of `relative` asks for.
    static func firstReadBytes(_ relative: String) -> Int {
        relative.hasPrefix("sys/") ? sysctlReadBytes : readBufferBytes
    }

    static let noControllingTerminal = FileDescriptor.OpenOptions(rawValue: O_NOCTTY)

    static func describe(_ type: FileType) -> String {
        switch type {
        case .fifo: "a FIFO"
        case .directory: "a directory"
        case .characterSpecial: "a character device"
        case .blockSpecial: "a block device"
        case .socket: "a socket"
        case .symbolicLink: "a symbolic link"
        default: "of file type \(type.rawValue)"
        }
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
        try ProcNetParser.table(source, try netText(source), file: path(Self.relative(source)))
    }

    /// One /proc/net statistics file as the kernel wrote it.
    public func netText(_ source: KernelCounter.Source) throws -> String {
        try read(Self.relative(source))
    }

    static func relative(_ source: KernelCounter.Source) -> String { "net/" + source.rawValue }
}

/// One network namespace's procfs and sysctl files, opened by a thread
/// inside it and kept: such a file stays bound to the namespace it was
/// opened in, so later reads from any thread see that namespace without
/// entering it again (`--all-namespaces` keeps one set per namespace).
public final class PinnedFiles: Sendable {
    private let descriptors: [String: (fd: FileDescriptor, path: String)]
    /// Files that could not be opened, with why (a sysctl an older kernel lacks: ENOENT).
    private let failures: [String: ProcFSError]

    /// Opens `relatives` (default `ProcFS.namespaceFiles`) through `procfs`
    /// as seen by the calling thread, which must be in the namespace.
    public init(procfs: ProcFS, relatives: [String] = ProcFS.namespaceFiles) {
        var descriptors: [String: (fd: FileDescriptor, path: String)] = [:]
        var failures: [String: ProcFSError] = [:]
        // Each folder (sys/net/ipv4, thread-self/net) opened once, on first
        // need (nil: it could not be); its files are opened relative to it,
        // or else by their whole path, which names the error.
        var folders: [String: FileDescriptor?] = [:]
        defer { for case let folder? in folders.values { try? folder.close() } }
        for relative in relatives {
            let full = procfs.path(relative)
            var directory: (fd: FileDescriptor, leaf: String)?
            if let slash = full.lastIndex(of: "/"), slash != full.startIndex {
                let folder = String(full[..<slash])
                if folders[folder] == nil {
                    folders[folder] = .some(try? FileDescriptor.open(FilePath(folder), .readOnly, options: [.directory, .closeOnExec]))
                }
                directory = folders[folder]!.map { ($0, String(full[full.index(after: slash)...])) }
            }
            do {
                descriptors[relative] = (try ProcFS.openRegular(full, in: directory), full)
            } catch let error as ProcFSError {
                failures[relative] = error
            } catch {
                failures[relative] = ProcFSError(path: full, reason: "\(error)")
            }
        }
        self.descriptors = descriptors
        self.failures = failures
    }

    deinit {
        for kept in descriptors.values { try? kept.fd.close() }
    }

    /// Descriptors held: what one namespace costs besides its netlink sockets.
    public var count: Int { descriptors.count }

    func read(_ relative: String) throws -> String {
        guard let kept = descriptors[relative] else {
            throw failures[relative] ?? ProcFSError(path: relative, reason: "not among the files kept for this namespace")
        }
        return try ProcFS.readAll(kept.fd, path: kept.path, fromStart: true, firstRead: ProcFS.firstReadBytes(relative))
    }
}
