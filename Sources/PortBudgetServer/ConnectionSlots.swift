import NIOConcurrencyHelpers
import NIOCore

/// The connection cap. Every accepted connection takes a slot. When every
/// slot is taken, a new connection evicts an idle one rather than being
/// refused, so connections that do nothing cannot lock a scraper out: first
/// the oldest connection that never sent a byte, then the keep-alive
/// connection idle the longest. Only when every slot is busy — a request
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
    private let table = NIOLockedValueBox(Table())

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Open connections holding a slot.
    var count: Int { table.withLockedValue { $0.entries.count } }

    /// Gives `channel` a slot, taking one from an idle connection when all are
    /// in use; the caller closes the evicted channel.
    func admit(_ channel: any Channel) -> Admission {
        table.withLockedValue { table in
            var evicted: (any Channel)?
            if table.entries.count >= capacity {
                guard let victim = Self.victim(in: table.entries) else { return .refused }
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

    /// A connection that never sent a byte, the oldest first; else the
    /// keep-alive connection idle the longest; never a busy one.
    private static func victim(in entries: [Int: Entry]) -> Int? {
        var best: (id: Int, entry: Entry)?
        for (id, entry) in entries where entry.activity != .busy {
            guard let current = best?.entry else { best = (id, entry); continue }
            let fresher = entry.activity == .fresh && current.activity == .idle
            let sameKindOlder = entry.activity == current.activity && entry.since < current.since
            if fresher || sameKindOlder { best = (id, entry) }
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
