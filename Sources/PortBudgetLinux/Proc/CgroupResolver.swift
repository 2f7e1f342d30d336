import Glibc
import PortBudgetCore
import Synchronization

/// Turns the cgroup v2 ids that SOCK_DIAG reports into paths below the v2
/// root. It walks the hierarchy once, taking each directory's id with
/// name_to_handle_at(2) (a kernfs file handle is the cgroup id), and caches
/// id → path. An id it does not know makes it walk again at once — a new
/// service or container is exactly when an incident starts, and its cgroup
/// existed before its sockets did — at most once per `resolve`; so does a
/// known id whose path no longer holds it. A known id is checked against its
/// path once per collection (`startCollection`), not once per namespace: the
/// namespaces of one collection mostly share their cgroups. An id still
/// absent after a walk is gone (its sockets outlived it); cgroup ids are
/// never reused, so it is remembered as gone and never prompts another walk.
///
/// The checks run outside the lock, so the collection's workers resolving
/// their namespaces at once do not wait on each other's system calls.
public final class CgroupResolver: Sendable {
    public enum Resolution: Sendable, Equatable {
        case owner(CgroupOwner)
        /// No cgroup with this id exists any more (or never existed in this view).
        case gone
    }

    /// At most this many cgroups are walked: a bound on memory and time for
    /// hosts with pathological hierarchies.
    public static let maxCgroups = 100_000
    /// Ids remembered as gone; past it the memory starts over (a host
    /// deleting cgroups with live sockets faster than this is rare).
    public static let maxGone = 4096

    /// Where the v2 mount point comes from: given, or read from mountinfo
    /// on first need — by a collection's worker, not on the way to the
    /// first collection, where the mount table (with a bind mount per
    /// named namespace) costs half a millisecond that nothing overlaps.
    private enum RootSource: Sendable {
        case found(String?)
        case mountinfo(ProcFS)
    }

    private struct State {
        var root: RootSource
        /// id → path relative to the root, from the last walk.
        var paths: [UInt64: String] = [:]
        var gone: Set<UInt64> = []
        var walks = 0
        /// Ids whose paths were found to hold them during this collection.
        var checked: Set<UInt64> = []
    }

    private let state: Mutex<State>

    /// Finds the v2 hierarchy in `procfs`'s `self/mountinfo`, when first asked.
    public init(procfs: ProcFS) {
        state = Mutex(State(root: .mountinfo(procfs)))
    }

    public init(root: String?) {
        state = Mutex(State(root: .found(root)))
    }

    /// A collection starts: every known id is checked against its path again
    /// when next resolved (a cgroup removed since is unknown again, so no
    /// path that no longer exists names it).
    public func startCollection() {
        state.withLock { $0.checked = [] }
    }

    /// The v2 mount point, nil when this host has no cgroup v2 hierarchy.
    public var root: String? { state.withLock { Self.root(&$0.root) } }

    private static func root(_ source: inout RootSource) -> String? {
        switch source {
        case let .found(root): return root
        case let .mountinfo(procfs):
            let root = (try? procfs.read("self/mountinfo")).flatMap(MountInfo.cgroup2MountPoint)
            source = .found(root)
            return root
        }
    }

    /// Walks of the hierarchy so far (the first included).
    public var walks: Int { state.withLock { $0.walks } }

    /// Resolves every id in `ids`, walking the hierarchy (once) when one is
    /// neither known nor known to be gone.
    public func resolve(_ ids: some Sequence<UInt64>) -> [UInt64: Resolution] {
        var wanted = Array(ids)
        wanted.sort()
        // Known ids not yet checked in this collection, each against its
        // path with one name_to_handle_at, outside the lock.
        guard let (root, walks, unchecked) = state.withLock({ state -> (String, Int, [(id: UInt64, path: String)])? in
            guard let root = Self.root(&state.root) else { return nil }
            return (root, state.walks, wanted.compactMap { id in
                state.checked.contains(id) ? nil : state.paths[id].map { (id, $0) }
            })
        }) else { return [:] }
        let moved = Set(unchecked.lazy.filter { Self.cgroupID($0.path == "/" ? root : root + $0.path) != $0.id }.map(\.id))
        return state.withLock { state in
            for known in unchecked where !moved.contains(known.id) && state.paths[known.id] == known.path {
                state.checked.insert(known.id)
            }
            // Another worker may have walked meanwhile: what its walk found
            // is checked, and a moved id it did not find is gone.
            let walkedSince = state.walks != walks
            let unknown = wanted.filter { id in
                if state.checked.contains(id) { return false }
                if moved.contains(id), walkedSince, state.paths[id] == nil {
                    state.gone.insert(id)
                    return false
                }
                return moved.contains(id) || (state.paths[id] == nil && !state.gone.contains(id))
            }
            if !unknown.isEmpty {
                state.paths = Self.walk(root)
                state.walks += 1
                // Every path was just read: none needs checking again this collection.
                state.checked = Set(state.paths.keys)
                if state.gone.count >= Self.maxGone { state.gone = [] }
                for id in unknown where state.paths[id] == nil { state.gone.insert(id) }
            }
            var out: [UInt64: Resolution] = [:]
            for id in wanted { out[id] = state.paths[id].map { .owner(CgroupOwner(path: $0)) } ?? .gone }
            return out
        }
    }

    /// id → path (relative to `root`, "/" for the root) of every cgroup below `root`.
    static func walk(_ root: String) -> [UInt64: String] {
        var paths: [UInt64: String] = [:]
        var pending = ["/"]
        while let relative = pending.popLast(), paths.count < maxCgroups {
            let full = relative == "/" ? root : root + relative
            guard let id = cgroupID(full) else { continue }  // gone while walking
            paths[id] = relative
            for entry in DirectoryEntries.list(full) ?? [] where entry.type == UInt8(DT_DIR) {
                pending.append(relative == "/" ? "/" + entry.name : relative + "/" + entry.name)
            }
        }
        return paths
    }

    /// The cgroup id of the directory at `path`: name_to_handle_at(2) gives
    /// kernfs's 8-byte file handle, which is the id.
    public static func cgroupID(_ path: String) -> UInt64? {
        guard let nameToHandleAt else { return nil }
        // struct file_handle { unsigned int handle_bytes; int handle_type; unsigned char f_handle[]; }
        var handle = [UInt8](repeating: 0, count: 8 + 64)
        var mountID: Int32 = 0
        let ok = handle.withUnsafeMutableBytes { raw -> Bool in
            raw.storeBytes(of: UInt32(64), toByteOffset: 0, as: UInt32.self)
            guard nameToHandleAt(AT_FDCWD, path, raw.baseAddress!, &mountID, 0) == 0 else { return false }
            return raw.load(fromByteOffset: 0, as: UInt32.self) == 8
        }
        guard ok else { return nil }
        return handle.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self) }
    }

    /// Glibc declares name_to_handle_at only under _GNU_SOURCE, which Swift's
    /// Glibc module does not define, so it is looked up at run time.
    private typealias NameToHandleAt = @convention(c) (Int32, UnsafePointer<CChar>, UnsafeMutableRawPointer,
                                                        UnsafeMutablePointer<Int32>, Int32) -> Int32
    private static let nameToHandleAt: NameToHandleAt? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "name_to_handle_at") else { return nil }
        return unsafeBitCast(symbol, to: NameToHandleAt.self)
    }()

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
