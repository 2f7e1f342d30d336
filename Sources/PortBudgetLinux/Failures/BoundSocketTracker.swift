import Foundation
import Glibc
import PortBudgetCore

/// Hands the census what the failure programs saw of bind() before
/// connect() in one namespace, and keeps their map to live sockets.
///
/// SOCK_DIAG shows a socket whose port bind(addr, 0) took exactly as one
/// whose port connect() chose, yet only the second may be shared with other
/// destinations. The programs remember, by socket cookie, every TCP socket
/// that began connect() with its port already bound; the census counts those
/// with the explicit binds. A connected socket that was already there when
/// this namespace was first looked at may have begun connect() unseen, so it
/// stays inferred, and the report says how many there are.
public final class BoundSocketTracker: @unchecked Sendable {
    /// A namespace not censused for this long is forgotten, and the sockets
    /// remembered in it with it (it is gone, or no longer watched).
    public static let forgetAfterSeconds: Double = 600

    /// One census in progress: what was known when its dumps began.
    public struct Census: Sendable {
        public let netnsInode: UInt64
        public let knowledge: BoundSocketKnowledge
        let startedBootNanoseconds: UInt64
    }

    let programs: FailurePrograms
    /// The agent's own namespace, which a census with inode 0 means.
    public let ownNetnsInode: UInt64?
    private let lock = NSLock()
    /// Per namespace: the connected sockets older than its first census,
    /// still open at the last one, and when that was.
    private var namespaces: [UInt64: (predating: BoundSocketKnowledge.Predating, lastCensus: Double)] = [:]

    init(programs: FailurePrograms, ownNetnsInode: UInt64?) {
        self.programs = programs
        self.ownNetnsInode = ownNetnsInode
    }

    /// Call right before the namespace's TCP dumps.
    public func begin(netnsInode: UInt64) throws(FailureProgramsUnavailable) -> Census {
        let started = Self.bootNanoseconds()
        let bound = try programs.boundSockets()
        let predating = lock.withLock { namespaces[netnsInode]?.predating } ?? .firstCensus
        let cookies = Set(bound.lazy.filter { $0.netnsInode == netnsInode }.map(\.cookie))
        return Census(netnsInode: netnsInode, knowledge: BoundSocketKnowledge(boundCookies: cookies, predating: predating),
                      startedBootNanoseconds: started)
    }

    /// Call after the dumps, with the census they filled. Returns how many
    /// sockets began connect() on a bound port while the dumps ran and may
    /// have been counted as connect()'s: the census reports them as untracked.
    public func finish(_ begun: Census, census: PortCensus) -> Int {
        let now = CollectorSet.monotonicSeconds()
        let after = (try? programs.boundSockets()) ?? []
        var forget: [UInt64] = []
        var raced = 0
        let known = lock.withLock {
            namespaces[begun.netnsInode] = (census.predatingAfter, now)
            namespaces = namespaces.filter { now - $0.value.lastCensus < Self.forgetAfterSeconds }
            return Set(namespaces.keys)
        }
        let age = UInt64(Self.forgetAfterSeconds * 1e9)
        let forgetBefore = begun.startedBootNanoseconds > age ? begun.startedBootNanoseconds - age : 0
        for socket in after {
            if socket.netnsInode == begun.netnsInode {
                if socket.bootNanoseconds < begun.startedBootNanoseconds {
                    // In the table before the dumps began, yet not in them: closed.
                    if !census.boundCookiesSeen.contains(socket.cookie) { forget.append(socket.cookie) }
                } else if !begun.knowledge.boundCookies.contains(socket.cookie),
                          census.holdsConnectChosen(port: socket.port) {
                    raced += 1
                }
            } else if !known.contains(socket.netnsInode) && socket.bootNanoseconds < forgetBefore {
                forget.append(socket.cookie)
            }
        }
        programs.forgetBoundSockets(forget)
        return raced
    }

    static func bootNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
