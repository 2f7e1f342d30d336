import CLibBPF
import Foundation
import Glibc
import PortBudgetCore

/// Why the failure programs could not be loaded, in one line that names
/// what is missing (a capability, tracefs) and the kernel's or libbpf's own words.
public struct FailureProgramsUnavailable: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// The failure collector's BPF programs (Failures/BPF/failures.bpf.c), loaded
/// and attached for as long as this object lives. Its maps are host-wide:
/// counts carry the network namespace's inode, so one load serves every
/// namespace. Reading only reads maps; nothing here runs per failure.
public final class FailurePrograms: @unchecked Sendable {
    public struct Options: Sendable, Equatable {
        /// Also count bind(addr, 0) EADDRINUSE and UDP connect() EAGAIN through
        /// syscall tracepoints, which slow every syscall of the host (see
        /// docs/failures.md for the measured cost); needs tracefs.
        public var syscallHooks: Bool

        public init(syscallHooks: Bool = false) { self.syscallHooks = syscallHooks }
    }

    /// The programs only the syscall-hook option loads.
    static let syscallPrograms = ["bind_enter", "bind_exit", "connect_enter", "connect_exit"]
    /// The drops array's slots, by the reason the exposition names.
    static let dropReasons = [(PB_DROP_COUNT_KEYS, "count_keys"), (PB_DROP_EVENTS, "events"), (PB_DROP_PENDING, "pending"),
                              (PB_DROP_BOUND_SOCKETS, "bound_sockets")]

    public let options: Options
    /// The failure kinds these programs count.
    public let watched: [FailureKind]
    private let object: OpaquePointer
    private var links: [OpaquePointer] = []
    private let countsFD: Int32
    private let dropsFD: Int32
    private let configFD: Int32
    private let boundSocketsFD: Int32
    private let retiringBoundSocketsFD: Int32
    private let boundRefusalsFD: Int32
    let eventsFD: Int32

    public init(options: Options = Options()) throws(FailureProgramsUnavailable) {
        self.options = options
        watched = FailureKind.alwaysWatched + (options.syscallHooks ? FailureKind.watchedThroughSyscalls : [])
        pb_libbpf_capture_logs()
        guard let bytes = Data(base64Encoded: FailureProgramsObject.base64) else {
            throw FailureProgramsUnavailable(description: "the embedded BPF object is not valid base64 (a build fault)")
        }
        let opened: OpaquePointer? = bytes.withUnsafeBytes { object in
            "portbudget_failures".withCString { name in
                var options = bpf_object_open_opts()
                options.sz = MemoryLayout<bpf_object_open_opts>.size
                options.object_name = name
                return bpf_object__open_mem(object.baseAddress, object.count, &options)
            }
        }
        guard let object = opened else {
            throw FailureProgramsUnavailable(description: Self.explain("opening the BPF object", errno: errno))
        }
        self.object = object
        var failure: FailureProgramsUnavailable?
        var fds: [Int32] = []
        do {
            if !options.syscallHooks {
                for name in Self.syscallPrograms {
                    if let program = bpf_object__find_program_by_name(object, name) { bpf_program__set_autoload(program, false) }
                }
            }
            let loaded = bpf_object__load(object)
            if loaded != 0 {
                failure = FailureProgramsUnavailable(description: Self.explain("loading the BPF programs", errno: -loaded))
            } else {
                fds = ["counts", "drops", "config", "events", "bound_sockets", "retiring_bound_sockets",
                       "bound_refusals"].map { (name: String) in bpf_object__find_map_fd_by_name(object, name) }
                var program = bpf_object__next_program(object, nil)
                while let current = program, failure == nil {
                    if bpf_program__autoload(current) {
                        if let link = bpf_program__attach(current) {
                            links.append(link)
                        } else {
                            let name = String(cString: bpf_program__name(current))
                            let section = String(cString: bpf_program__section_name(current))
                            failure = FailureProgramsUnavailable(description: Self.explain(
                                "attaching \(name) (\(section))", errno: errno, tracefs: section.hasPrefix("tracepoint/")))
                        }
                    }
                    program = bpf_object__next_program(object, current)
                }
            }
        }
        if let failure {
            for link in links { bpf_link__destroy(link) }
            bpf_object__close(object)
            throw failure
        }
        (countsFD, dropsFD, configFD, eventsFD) = (fds[0], fds[1], fds[2], fds[3])
        (boundSocketsFD, retiringBoundSocketsFD, boundRefusalsFD) = (fds[4], fds[5], fds[6])
    }

    deinit {
        for link in links { bpf_link__destroy(link) }
        bpf_object__close(object)
    }

    /// Every counter the kernel keeps, all namespaces.
    public func counts() throws(FailureProgramsUnavailable) -> [FailureCountKey: UInt64] {
        var out: [FailureCountKey: UInt64] = [:]
        var key = pb_count_key()
        var next = pb_count_key()
        var havePrevious = false
        while true {
            let step = havePrevious ? bpf_map_get_next_key(countsFD, &key, &next) : bpf_map_get_next_key(countsFD, nil, &next)
            if step != 0 {
                if errno == ENOENT { break }
                throw FailureProgramsUnavailable(description: "reading the failure counts: \(String(cString: strerror(errno)))")
            }
            var value: UInt64 = 0
            // A key deleted between the two calls is simply skipped (the programs never delete).
            if bpf_map_lookup_elem(countsFD, &next, &value) == 0, let call = FailureCall(rawValue: next.call) {
                let kind = FailureKind(protocolNumber: next.protocol, call: call, errno: next.error)
                out[FailureCountKey(netnsInode: UInt64(next.netns_inode), kind: kind, cgroupID: next.cgroup_id),
                    default: 0] += value
            }
            key = next
            havePrevious = true
        }
        return out
    }

    /// Failures the kernel side could not count or deliver, by reason.
    public func drops() -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for (slot, reason) in Self.dropReasons {
            var index = UInt32(slot.rawValue)
            var value: UInt64 = 0
            if bpf_map_lookup_elem(dropsFD, &index, &value) == 0 { out[reason] = value }
        }
        return out
    }

    /// Turns the per-failure events on (while `portbudget trace` reads them) or off.
    public func emitEvents(_ on: Bool) {
        var index = UInt32(PB_CONFIG_EMIT_EVENTS.rawValue)
        var value: UInt64 = on ? 1 : 0
        _ = bpf_map_update_elem(configFD, &index, &value, UInt64(BPF_ANY))
    }

    /// A new, empty map for one namespace's sockets bound before connect(),
    /// holding at most `capacity` (`struct pb_bound_socket` by cookie, like
    /// the programs' template). The caller files it with `watchBoundSockets`.
    public func makeBoundSocketMap(capacity: Int) throws(FailureProgramsUnavailable) -> BoundSocketMap {
        var options = bpf_map_create_opts()
        options.sz = MemoryLayout<bpf_map_create_opts>.size
        options.map_flags = UInt32(BPF_F_NO_PREALLOC)
        let fd = bpf_map_create(BPF_MAP_TYPE_HASH, "pb_bound_netns", UInt32(MemoryLayout<UInt64>.size),
                                UInt32(MemoryLayout<pb_bound_socket>.size), UInt32(capacity), &options)
        guard fd >= 0 else {
            throw FailureProgramsUnavailable(description: "creating a bound-socket map: \(String(cString: strerror(-fd)))")
        }
        return BoundSocketMap(fd: fd, capacity: capacity)
    }

    /// Files `map` as the namespace's map: its sockets bound before
    /// connect() are remembered there from now on. `retiring` files it as
    /// the namespace's previous map instead (read and forgotten from, no
    /// longer added to). The first time, the namespace's refusals start at zero.
    public func watchBoundSockets(netnsInode: UInt64, in map: BoundSocketMap, retiring: Bool = false)
        throws(FailureProgramsUnavailable) {
        var key = UInt32(truncatingIfNeeded: netnsInode)
        var value = UInt32(bitPattern: map.fd)
        if bpf_map_update_elem(retiring ? retiringBoundSocketsFD : boundSocketsFD, &key, &value, UInt64(BPF_ANY)) != 0 {
            throw FailureProgramsUnavailable(description: "watching a namespace's bound sockets: \(String(cString: strerror(errno)))")
        }
        var zero: UInt64 = 0
        _ = bpf_map_update_elem(boundRefusalsFD, &key, &zero, UInt64(BPF_NOEXIST))
    }

    /// The namespace's map (or its previous one, `retiring`), opened, or nil
    /// when it has none.
    public func boundSocketMap(netnsInode: UInt64, retiring: Bool = false) -> BoundSocketMap? {
        var key = UInt32(truncatingIfNeeded: netnsInode)
        var id: UInt32 = 0
        guard bpf_map_lookup_elem(retiring ? retiringBoundSocketsFD : boundSocketsFD, &key, &id) == 0 else { return nil }
        let fd = bpf_map_get_fd_by_id(id)
        guard fd >= 0 else { return nil }
        var info = bpf_map_info()
        var length = UInt32(MemoryLayout<bpf_map_info>.size)
        let capacity = bpf_obj_get_info_by_fd(fd, &info, &length) == 0 ? Int(info.max_entries) : BoundSocketMap.batch
        return BoundSocketMap(fd: fd, capacity: capacity)
    }

    /// Stops filing the namespace's previous map (the kernel frees it once unused).
    public func dropRetiringBoundSockets(netnsInode: UInt64) {
        var key = UInt32(truncatingIfNeeded: netnsInode)
        _ = bpf_map_delete_elem(retiringBoundSocketsFD, &key)
    }

    /// Stops watching the namespace: its maps and refusal count go.
    public func unwatchBoundSockets(netnsInode: UInt64) {
        var key = UInt32(truncatingIfNeeded: netnsInode)
        for fd in [boundSocketsFD, retiringBoundSocketsFD, boundRefusalsFD] { _ = bpf_map_delete_elem(fd, &key) }
    }

    /// Sockets the namespace's full map refused since it was first watched.
    public func boundSocketRefusals(netnsInode: UInt64) -> UInt64? {
        var key = UInt32(truncatingIfNeeded: netnsInode)
        var value: UInt64 = 0
        return bpf_map_lookup_elem(boundRefusalsFD, &key, &value) == 0 ? value : nil
    }

    /// One line: what failed, what is missing for it, and libbpf's own first words.
    static func explain(_ step: String, errno code: Int32, tracefs: Bool = false) -> String {
        var missing: [String] = []
        if code == EPERM || code == EACCES {
            let effective = Capabilities.effective()
            let admin = effective.contains(.sysAdmin)
            if !effective.contains(.bpf) && !admin { missing.append("CAP_BPF") }
            if !effective.contains(.perfmon) && !admin { missing.append("CAP_PERFMON") }
            if tracefs && !effective.contains(.dacReadSearch) { missing.append("CAP_DAC_READ_SEARCH (to read tracefs event ids)") }
        }
        if tracefs, let problem = Tracefs.problem() { missing.append(problem) }
        var line = "failure collector unavailable: \(step) failed: \(String(cString: strerror(code)))"
        if !missing.isEmpty { line += "; needs " + missing.joined(separator: ", ") }
        let libbpf = String(cString: pb_libbpf_first_message())
        if !libbpf.isEmpty { line += " (libbpf: \(libbpf))" }
        return line
    }
}

/// A TCP socket the programs saw begin connect() with its port already
/// bound (`struct pb_bound_socket`).
public struct BoundSocket: Sendable, Equatable {
    public var cookie: UInt64
    public var netnsInode: UInt64
    public var port: UInt16
    /// CLOCK_BOOTTIME when its connect() began.
    public var bootNanoseconds: UInt64
}

/// One namespace's map of sockets bound before connect(), open for as long
/// as this lives (the programs' table of maps holds the map itself).
public final class BoundSocketMap {
    let fd: Int32
    /// The most entries it holds.
    public let capacity: Int

    init(fd: Int32, capacity: Int) {
        self.fd = fd
        self.capacity = capacity
    }

    deinit { close(fd) }

    /// Entries read per bpf() call, at most (a smaller map's capacity
    /// otherwise, so a census of a small namespace allocates little).
    public static let batch = 4096

    /// Every socket remembered in this map.
    public func read() throws(FailureProgramsUnavailable) -> [BoundSocket] {
        let chunk = min(Self.batch, max(capacity, 1))
        var keys = [UInt64](repeating: 0, count: chunk)
        var values = [pb_bound_socket](repeating: pb_bound_socket(), count: chunk)
        var out: [BoundSocket] = []
        var token: UInt32 = 0
        var first = true
        while true {
            var count = UInt32(chunk)
            var next: UInt32 = 0
            var options = bpf_map_batch_opts()
            options.sz = MemoryLayout<bpf_map_batch_opts>.size
            let result = keys.withUnsafeMutableBytes { keyBytes in
                values.withUnsafeMutableBytes { valueBytes in
                    withUnsafeMutablePointer(to: &token) { tokenPointer in
                        bpf_map_lookup_batch(fd, first ? nil : UnsafeMutableRawPointer(tokenPointer), &next,
                                             keyBytes.baseAddress, valueBytes.baseAddress, &count, &options)
                    }
                }
            }
            let failure = result == 0 ? 0 : errno
            if failure != 0 && failure != ENOENT {
                throw FailureProgramsUnavailable(description: "reading the bound sockets: \(String(cString: strerror(failure)))")
            }
            for i in 0..<Int(count) {
                out.append(BoundSocket(cookie: keys[i], netnsInode: UInt64(values[i].netns_inode),
                                       port: values[i].port, bootNanoseconds: values[i].boot_ns))
            }
            if failure == ENOENT { return out } // the last batch
            token = next
            first = false
        }
    }

    /// Adds `socket` unless its cookie is there already; false when it was not added.
    func insertIfAbsent(_ socket: BoundSocket) -> Bool {
        var key = socket.cookie
        var value = pb_bound_socket(boot_ns: socket.bootNanoseconds, netns_inode: UInt32(truncatingIfNeeded: socket.netnsInode),
                                    port: socket.port, unused: 0)
        return bpf_map_update_elem(fd, &key, &value, UInt64(BPF_NOEXIST)) == 0
    }

    func contains(_ cookie: UInt64) -> Bool {
        var key = cookie
        var value = pb_bound_socket()
        return bpf_map_lookup_elem(fd, &key, &value) == 0
    }

    /// Forgets sockets that are gone.
    public func forget(_ cookies: [UInt64]) {
        for var cookie in cookies { _ = bpf_map_delete_elem(fd, &cookie) }
    }
}

/// The calling process's effective capabilities, from /proc/self/status.
struct Capabilities: OptionSet {
    let rawValue: UInt64
    static let dacReadSearch = Capabilities(rawValue: 1 << 2)
    static let sysAdmin = Capabilities(rawValue: 1 << 21)
    static let perfmon = Capabilities(rawValue: 1 << 38)
    static let bpf = Capabilities(rawValue: 1 << 39)

    static func effective() -> Capabilities {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let bits = UInt64(line.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16)
        else { return [] }
        return Capabilities(rawValue: bits)
    }
}

/// Where tracepoint programs find their event ids.
enum Tracefs {
    static let mountPoints = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]

    /// Why tracefs cannot serve event ids, or nil when it can.
    static func problem() -> String? {
        for path in mountPoints where access(path + "/events", F_OK) == 0 {
            return access(path + "/events/syscalls", R_OK | X_OK) == 0 ? nil
                : "read access to \(path)/events (CAP_DAC_READ_SEARCH)"
        }
        return "tracefs mounted at /sys/kernel/tracing (mount -t tracefs tracefs /sys/kernel/tracing)"
    }
}
