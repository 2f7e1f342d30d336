/// A fixed-size bitmap over ports `low...high`; 3.5 KiB for the default range.
public struct PortBitmap: Sendable, Equatable {
    public let low: UInt16
    public let high: UInt16
    private var words: [UInt64]
    public private(set) var count: Int = 0

    public init(low: UInt16, high: UInt16) {
        precondition(low <= high)
        self.low = low
        self.high = high
        words = [UInt64](repeating: 0, count: (Int(high) - Int(low)) / 64 + 1)
    }

    @inlinable public func covers(_ port: UInt16) -> Bool { port >= low && port <= high }

    public func contains(_ port: UInt16) -> Bool {
        guard covers(port) else { return false }
        let offset = Int(port &- low)
        return words[offset >> 6] & (1 << UInt64(offset & 63)) != 0
    }

    /// Adds `port`; returns true when it was not there yet. Ports outside the range are ignored.
    @discardableResult
    public mutating func insert(_ port: UInt16) -> Bool {
        guard covers(port) else { return false }
        let offset = Int(port &- low)
        let mask: UInt64 = 1 << UInt64(offset & 63)
        if words[offset >> 6] & mask != 0 { return false }
        words[offset >> 6] |= mask
        count += 1
        return true
    }

    /// Ports set in `self`, ascending.
    public var ports: [UInt16] {
        var out: [UInt16] = []
        out.reserveCapacity(count)
        for (index, word) in words.enumerated() where word != 0 {
            var w = word
            while w != 0 {
                let bit = w.trailingZeroBitCount
                out.append(low &+ UInt16(index * 64 + bit))
                w &= w - 1
            }
        }
        return out
    }

    /// How many ports of `self` are not in `other` (which must share the range).
    public func countExcluding(_ other: PortBitmap) -> Int {
        precondition(low == other.low && high == other.high)
        var total = 0
        for i in words.indices { total += (words[i] & ~other.words[i]).nonzeroBitCount }
        return total
    }
}

/// The distinct local ports one group holds. Small groups keep an unsorted
/// array (two bytes a socket, no per-socket allocation once grown); a group
/// that outgrows a bitmap's size switches to one, so memory per group is
/// bounded by the range size, never by the socket count.
public struct GroupPortSet: Sendable {
    private var small: [UInt16] = []
    private var bitmap: PortBitmap?

    public init() {}

    public mutating func insert(_ port: UInt16, range: (low: UInt16, high: UInt16)) {
        if bitmap != nil {
            bitmap!.insert(port)
            return
        }
        small.append(port)
        // An array of n UInt16 costs 2n bytes; the bitmap costs range/8 bytes.
        if small.count * 16 > Int(range.high) - Int(range.low) + 64 {
            var map = PortBitmap(low: range.low, high: range.high)
            for p in small { map.insert(p) }
            bitmap = map
            small = []
        }
    }

    /// Distinct ports, excluding those in `excluded` (ports an explicit bind
    /// already takes from every group).
    public func distinctCount(excluding excluded: PortBitmap) -> Int {
        if let bitmap { return bitmap.countExcluding(excluded) }
        if small.count <= 1 { return small.filter { !excluded.contains($0) }.count }
        var sorted = small
        sorted.sort()
        var total = 0
        var previous: UInt16? = nil
        for p in sorted where p != previous {
            previous = p
            if !excluded.contains(p) { total += 1 }
        }
        return total
    }
}
