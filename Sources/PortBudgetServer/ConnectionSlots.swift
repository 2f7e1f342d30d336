import NIOConcurrencyHelpers
import NIOCore

/// The connection cap. Every accepted connection takes a slot. When every
/// slot is taken, a new connection evicts an idle one rather than being
/// refused, so connections that do nothing cannot lock a scraper out: first
/// the oldest connection that never sent a byte in `freshGrace` since its
/// accept, then the keep-alive connection idle the longest, then the oldest
/// connection too new to have sent its first byte. Only when every slot is busy — a request
/// being received, collected or written, each bounded by a deadline — is the
/// new connection refused.
///
/// Connections live on several event loops, so the table is behind a lock.
final class ConnectionSlots: Sendable {
    enum Activity: Sendable {
        /// Accepted, no byte received yet.
        case fresh
        /// Receiving a request, or answering one.
        case busy
        /// Keep-alive, between requests.
        case idle
    }

    enum Admission {
        case admitted(ConnectionSlot, evicting: (any Channel)?)
        case refused
    }

    private struct Entry {
        let channel: any Channel
        var activity: Activity
        /// When it entered `activity`: the oldest goes first.
        var since: NIODeadline
    }

    private struct Table {
        var entries: [Int: Entry] = [:]
        var nextID = 0
    }

    let capacity: Int
    let freshGrace: TimeAmount
    private let table = NIOLockedValueBox(Table())

    /// How long a new connection counts as not yet silent. A client's first
    /// bytes (a request, a TLS ClientHello) usually wait in the socket at
    /// accept, but are read only after the connection reaches its event loop;
    /// under a flood of reconnecting clients, evicting such a connection
    /// before it could be read would starve the very scraper the cap protects.
    static let defaultFreshGrace = TimeAmount.milliseconds(250)

    init(capacity: Int, freshGrace: TimeAmount = defaultFreshGrace) {
        self.capacity = capacity
        self.freshGrace = freshGrace
    }

    /// Open connections holding a slot.
    var count: Int { table.withLockedValue { $0.entries.count } }

    /// Gives `channel` a slot, taking one from an idle connection when all are
    /// in use; the caller closes the evicted channel.
    func admit(_ channel: any Channel) -> Admission {
        table.withLockedValue { table in
            var evicted: (any Channel)?
            if table.entries.count >= capacity {
                guard let victim = Self.victim(in: table.entries, now: .now(), freshGrace: freshGrace) else { return .refused }
                evicted = table.entries.removeValue(forKey: victim)?.channel
            }
            let id = table.nextID
            table.nextID += 1
            table.entries[id] = Entry(channel: channel, activity: .fresh, since: .now())
            return .admitted(ConnectionSlot(id: id, slots: self), evicting: evicted)
        }
    }

    /// Records what the connection is doing. False when it was evicted (it is
    /// being closed and must not start anything).
    func mark(_ id: Int, _ activity: Activity) -> Bool {
        table.withLockedValue { table in
            guard table.entries[id] != nil else { return false }
            if table.entries[id]!.activity != activity {
                table.entries[id]!.activity = activity
                table.entries[id]!.since = .now()
            }
            return true
        }
    }

    func release(_ id: Int) {
        _ = table.withLockedValue { $0.entries.removeValue(forKey: id) }
    }

    /// A connection silent past the grace, the oldest first; else the
    /// keep-alive connection idle the longest; else the oldest connection
    /// still within its grace; never a busy one.
    private static func victim(in entries: [Int: Entry], now: NIODeadline, freshGrace: TimeAmount) -> Int? {
        func rank(_ entry: Entry) -> Int {
            switch entry.activity {
            case .fresh: return now - entry.since >= freshGrace ? 0 : 2
            case .idle: return 1
            case .busy: return 3
            }
        }
        var best: (id: Int, rank: Int, since: NIODeadline)?
        for (id, entry) in entries where entry.activity != .busy {
            let candidate = (id: id, rank: rank(entry), since: entry.since)
            guard let current = best else { best = candidate; continue }
            if candidate.rank < current.rank || (candidate.rank == current.rank && candidate.since < current.since) {
                best = candidate
            }
        }
        return best?.id
    }
}

/// One connection's slot, through which it reports what it is doing.
struct ConnectionSlot: Sendable {
    let id: Int
    let slots: ConnectionSlots

    /// False when the connection was evicted.
    func mark(_ activity: ConnectionSlots.Activity) -> Bool { slots.mark(id, activity) }
    func release() { slots.release(id) }
}
