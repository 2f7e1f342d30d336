import CLibBPF
import Foundation
import Glibc
import PortBudgetCore

/// Hands the census what the failure programs saw of bind() before
/// connect() in one namespace, and keeps their maps to live sockets.
///
/// SOCK_DIAG shows a socket whose port bind(addr, 0) took exactly as one
/// whose port connect() chose, yet only the second may be shared with other
/// destinations. The programs remember, by socket cookie, every TCP socket
/// that began connect() with its port already bound; the census counts those
/// with the explicit binds. A connected socket that was already there when
/// this namespace was first looked at may have begun connect() unseen, so it
/// stays inferred, and the report says how many there are.
///
/// Each namespace censused gets a kernel map of its own, made before its
/// first census's dumps (`BoundSocketAllowance` sizes it and says which
/// namespaces get one), so a census reads its own namespace's entries only,
/// and a namespace that fills its map refuses its own sockets only. A
/// refusal moves that namespace's counter; its next census takes every
/// connected socket it does not know as older than the programs (inferred)
/// until it closes. A namespace refused a map is inferred throughout.
///
/// It also keeps, per namespace, what the last census learnt that the
/// next needs: the explicitly bound connected sockets the kernel's filter
/// labelled, so the next census walks the kernel's tables once instead of
/// twice (`Census.labels`), and the sockets on each listener's port, so one
/// that outlives its listener still counts as holding bind()'s port.
public final class BoundSocketTracker: @unchecked Sendable {
    /// A namespace not censused for this long is forgotten, and its map
    /// with it (it is gone, or no longer watched).
    public static let forgetAfterSeconds: Double = 600
    /// How often, at most, watched namespaces are checked for staleness:
    /// the check walks all of them, and a census of each of thousands of
    /// namespaces must not walk them all.
    public static let staleSweepSeconds: Double = 60
    /// The reason `drops_total` counts a namespace refused a map under.
    public static let namespaceDropReason = "bound_namespaces"

    /// One census in progress: what was known when its dumps began.
    public struct Census: Sendable {
        public let netnsInode: UInt64
        public let knowledge: BoundSocketKnowledge
        let startedBootNanoseconds: UInt64
        /// False when the namespace has no map: nothing can be known.
        let watched: Bool
        let refusalsAtStart: UInt64
        /// Map entries read so far by this census.
        let entriesRead: Int
        /// Set when one walk of the namespace's TCP tables is enough: the
        /// connected sockets an earlier census saw explicitly bound
        /// (`PortCensus.useLabels`). Nil: the kernel's bind filter must
        /// label them, which takes a second walk.
        public let labels: Set<UInt64>?
        /// The last census's accepted sockets by listener port
        /// (`PortCensus.useListenerChildren`).
        public let listenerChildren: [UInt16: Set<UInt64>]
    }

    /// What the last census whose dumps the kernel labelled (or a single
    /// walk since) knew of explicitly bound connected sockets, and the
    /// namespace's refusals when it began. A connected socket holds the
    /// kernel's bind flag only if bind(addr, port) gave it its port before
    /// connect() (accepted sockets never inherit it), and the programs
    /// remember every socket that enters connect() with a port: so while
    /// no refusal is added, every newer socket so bound is one they know,
    /// and one walk tells them all.
    struct Labels {
        var explicitCookies: Set<UInt64>
        let refusals: UInt64
    }

    /// What is kept of one watched namespace between its censuses.
    struct Watched {
        var holder: BoundSocketAllowance.Holder
        /// The connected sockets older than its map (or than its last refusal), still open at the last census.
        var predating: BoundSocketKnowledge.Predating = .firstCensus
        var lastCensus: Double
        /// The refusal count when the last finished census began.
        var refusalsSeen: UInt64 = 0
        /// A smaller previous map still holds entries, to be moved over.
        var retiring = false
        /// Entries remembered at the last census.
        var remembered = 0
        /// Entries the last census read, for `entriesRead(lastCensusOf:)`.
        var entriesRead = 0
        var labels: Labels?
        var listenerChildren: [UInt16: Set<UInt64>] = [:]
        /// Whether the last census walked the TCP tables once.
        var walkedOnce = false
    }

    let programs: FailurePrograms
    /// The agent's own namespace, which a census with inode 0 means.
    public let ownNetnsInode: UInt64?
    private let lock = NSLock()
    private var namespaces: [UInt64: Watched] = [:]
    /// Namespaces refused a map, and when each was last censused.
    private var refused: [UInt64: Double] = [:]
    private var namespacesRefusedTotal: UInt64 = 0
    /// Of `namespaces`, how many are tenants' (kept, not counted per census).
    private var watchedTenants = 0
    private var lastStaleSweep: Double = 0

    init(programs: FailurePrograms, ownNetnsInode: UInt64?) {
        self.programs = programs
        self.ownNetnsInode = ownNetnsInode
    }

    /// Call right before the namespace's TCP dumps. `ownedByHost` is false
    /// for a namespace in an unprivileged user's user namespace.
    public func begin(netnsInode: UInt64, ownedByHost: Bool = true) throws(FailureProgramsUnavailable) -> Census {
        let started = Self.bootNanoseconds()
        let holder: BoundSocketAllowance.Holder = netnsInode == ownNetnsInode ? .agent : ownedByHost ? .host : .tenant
        guard let state = try watch(netnsInode, holder: holder) else {
            return Census(netnsInode: netnsInode, knowledge: BoundSocketKnowledge(boundCookies: [], predating: .firstCensus),
                          startedBootNanoseconds: started, watched: false, refusalsAtStart: 0, entriesRead: 0, labels: nil,
                          listenerChildren: [:])
        }
        let refusals = programs.boundSocketRefusals(netnsInode: netnsInode) ?? 0
        // Good while the map refused nothing since they were taken. A socket
        // the programs remember after the map is read below is one `finish`
        // counts as raced.
        let labels = state.labels.flatMap { $0.refusals == refusals ? $0.explicitCookies : nil }
        let bound = try read(netnsInode, retiring: state.retiring)
        // A refused socket may be among the connected ones: none is exact until it closes.
        let predating = refusals == state.refusalsSeen ? state.predating : .firstCensus
        return Census(netnsInode: netnsInode,
                      knowledge: BoundSocketKnowledge(boundCookies: Set(bound.map(\.cookie)), predating: predating),
                      startedBootNanoseconds: started, watched: true, refusalsAtStart: refusals,
                      entriesRead: bound.count, labels: labels, listenerChildren: state.listenerChildren)
    }

    /// Call after the dumps, with the census they filled; `dumpedTCP` false
    /// when the namespace's counters said it had no TCP socket, so none was
    /// dumped. Returns how many sockets began connect() on a bound port
    /// while the dumps ran, or were refused by a full map meanwhile, and may
    /// have been counted as connect()'s: the census reports them as untracked.
    /// `walkedOnce`: the census used `begun.labels` for one walk, rather
    /// than the kernel's filter.
    public func finish(_ begun: Census, census: PortCensus, dumpedTCP: Bool = true, walkedOnce: Bool = false) -> Int {
        let now = CollectorSet.monotonicSeconds()
        defer { forgetStale(now: now) }
        guard begun.watched, let state = lock.withLock({ namespaces[begun.netnsInode] }) else {
            lock.withLock { if refused[begun.netnsInode] != nil { refused[begun.netnsInode] = now } }
            return 0
        }
        let inode = begun.netnsInode
        let current = programs.boundSocketMap(netnsInode: inode)
        let previous = state.retiring ? programs.boundSocketMap(netnsInode: inode, retiring: true) : nil
        let inCurrent = (try? current?.read()) ?? []
        let inPrevious = (try? previous?.read()) ?? []
        let refusals = programs.boundSocketRefusals(netnsInode: inode) ?? begun.refusalsAtStart
        var forget: [UInt64] = []
        var raced = Int(truncatingIfNeeded: refusals &- begun.refusalsAtStart)
        // Without dumps nothing is known to be closed: the counters were read
        // before this began, so a socket may have connected in between.
        for socket in inCurrent + inPrevious where dumpedTCP {
            if socket.bootNanoseconds < begun.startedBootNanoseconds {
                // In the map before the dumps began, yet not in them: closed.
                if !census.boundCookiesSeen.contains(socket.cookie) { forget.append(socket.cookie) }
            } else if !begun.knowledge.boundCookies.contains(socket.cookie), census.holdsConnectChosen(port: socket.port) {
                raced += 1
            }
        }
        current?.forget(forget)
        previous?.forget(forget)
        var next = state
        next.walkedOnce = walkedOnce
        if dumpedTCP {
            next.predating = census.predatingAfter
            next.refusalsSeen = begun.refusalsAtStart
            // A single walk began with labels of the same refusal count.
            next.labels = census.connectionLabels.map {
                Labels(explicitCookies: $0, refusals: begun.refusalsAtStart)
            }
            next.listenerChildren = census.listenerChildren ?? [:]
        } else if begun.knowledge.predating != .firstCensus {
            // No TCP socket when the counters were read, and the map watched since before: none is older.
            next.predating = .cookies([])
            next.refusalsSeen = begun.refusalsAtStart
        }
        // Else the map is new since the counters were read (a socket that
        // connected in between went unwatched), or a refusal is not yet
        // answered by a census that saw the sockets: the next census with
        // dumps is still a first one.
        next.lastCensus = now
        next.entriesRead = begun.entriesRead + inCurrent.count + inPrevious.count
        let gone = Set(forget)
        let left = inPrevious.filter { !gone.contains($0.cookie) }
        if let current, let previous {
            next.retiring = !move(left, from: previous, to: current)
            if !next.retiring { programs.dropRetiringBoundSockets(netnsInode: inode) }
        }
        next.remembered = inCurrent.count + inPrevious.count - forget.count
        if !next.retiring, let current,
           let bigger = BoundSocketAllowance.grownCapacity(current.capacity, remembered: next.remembered, holder: state.holder) {
            next.retiring = grow(inode, from: current, to: bigger)
        }
        lock.withLock { namespaces[inode] = next }
        return raced
    }

    /// Sockets remembered, all namespaces, as of each one's last census.
    public func remembered() -> Int {
        lock.withLock { namespaces.values.reduce(0) { $0 + $1.remembered } }
    }

    /// Namespaces whose last census walked their TCP tables once.
    public func namespacesWalkedOnce() -> Int {
        lock.withLock { namespaces.values.reduce(0) { $0 + ($1.walkedOnce ? 1 : 0) } }
    }

    /// What the tracker refused, by `drops_total` reason: namespaces given no map.
    public func drops() -> [String: UInt64] {
        lock.withLock { [Self.namespaceDropReason: namespacesRefusedTotal] }
    }

    /// Map entries the namespace's last census read (at its start and end),
    /// or nil when it has none: what a census costs grows with these only.
    public func entriesRead(lastCensusOf netnsInode: UInt64) -> Int? {
        lock.withLock { namespaces[netnsInode]?.entriesRead }
    }

    /// Whether the namespace's last census walked its TCP tables once
    /// (nil when it has no map).
    public func walkedOnce(lastCensusOf netnsInode: UInt64) -> Bool? {
        lock.withLock { namespaces[netnsInode]?.walkedOnce }
    }

    /// The size of the namespace's map, or nil when it has none.
    public func capacity(of netnsInode: UInt64) -> Int? {
        programs.boundSocketMap(netnsInode: netnsInode)?.capacity
    }

    private enum Admission { case known(Watched), new(Watched), refused }

    /// The namespace's state, its map made first if it has none and its
    /// holder's allowance admits one; nil when refused.
    private func watch(_ inode: UInt64, holder: BoundSocketAllowance.Holder) throws(FailureProgramsUnavailable) -> Watched? {
        let now = CollectorSet.monotonicSeconds()
        let admission: Admission = lock.withLock {
            if let state = namespaces[inode] { return .known(state) }
            guard BoundSocketAllowance.admits(holder, watched: namespaces.count, watchedTenants: watchedTenants,
                                              limit: Int(PB_MAX_WATCHED_NAMESPACES)) else {
                if refused[inode] == nil { namespacesRefusedTotal += 1 }
                refused[inode] = now
                return .refused
            }
            // Taken before the map exists, so parallel censuses cannot overrun the allowance.
            let state = Watched(holder: holder, lastCensus: now)
            namespaces[inode] = state
            if holder == .tenant { watchedTenants += 1 }
            refused[inode] = nil
            return .new(state)
        }
        switch admission {
        case let .known(state): return state
        case .refused: return nil
        case let .new(state):
            do throws(FailureProgramsUnavailable) {
                let map = try programs.makeBoundSocketMap(capacity: BoundSocketAllowance.initialCapacity(holder))
                try programs.watchBoundSockets(netnsInode: inode, in: map)
            } catch {
                lock.withLock {
                    namespaces[inode] = nil
                    if holder == .tenant { watchedTenants -= 1 }
                }
                throw error
            }
            return state
        }
    }

    /// The namespace's remembered sockets, in its map and in its previous one.
    private func read(_ inode: UInt64, retiring: Bool) throws(FailureProgramsUnavailable) -> [BoundSocket] {
        var bound = try programs.boundSocketMap(netnsInode: inode)?.read() ?? []
        if retiring { bound += try programs.boundSocketMap(netnsInode: inode, retiring: true)?.read() ?? [] }
        return bound
    }

    /// Files a bigger map for the namespace, its current one as previous
    /// (the programs add to the new one, and forget in both). Returns
    /// whether the previous one is now retiring.
    private func grow(_ inode: UInt64, from current: BoundSocketMap, to capacity: Int) -> Bool {
        guard let bigger = try? programs.makeBoundSocketMap(capacity: capacity) else { return false }
        // Previous first: a socket the programs forget meanwhile is looked for in both.
        guard (try? programs.watchBoundSockets(netnsInode: inode, in: current, retiring: true)) != nil else { return false }
        guard (try? programs.watchBoundSockets(netnsInode: inode, in: bigger)) != nil else {
            programs.dropRetiringBoundSockets(netnsInode: inode)
            return false
        }
        return true
    }

    /// Moves a previous map's entries into the current one, a census after
    /// it was replaced (by then no program still adds to it). Returns
    /// whether every entry moved.
    private func move(_ sockets: [BoundSocket], from previous: BoundSocketMap, to current: BoundSocketMap) -> Bool {
        var moved = true
        for socket in sockets {
            guard current.insertIfAbsent(socket) || current.contains(socket.cookie) else {
                moved = false
                continue
            }
            // Forgotten by the programs before it was added here (its port
            // released): it must not come back.
            if previous.contains(socket.cookie) {
                previous.forget([socket.cookie])
            } else {
                current.forget([socket.cookie])
            }
        }
        return moved
    }

    /// Namespaces not censused for `forgetAfterSeconds` are gone or no
    /// longer watched; checked every `staleSweepSeconds` at most.
    private func forgetStale(now: Double) {
        let stale: [UInt64] = lock.withLock {
            guard now - lastStaleSweep >= Self.staleSweepSeconds else { return [] }
            lastStaleSweep = now
            refused = refused.filter { now - $0.value < Self.forgetAfterSeconds }
            let stale = namespaces.filter { now - $0.value.lastCensus >= Self.forgetAfterSeconds }.map(\.key)
            for inode in stale {
                if namespaces[inode]?.holder == .tenant { watchedTenants -= 1 }
                namespaces[inode] = nil
            }
            return stale
        }
        for inode in stale { programs.unwatchBoundSockets(netnsInode: inode) }
    }

    static func bootNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
