/// The kernel's conntrack statistics, summed over CPUs where they are per CPU.
public struct ConntrackStatistics: Sendable, Equatable {
    public var found: Int64 = 0
    public var invalid: Int64 = 0
    public var insert: Int64 = 0
    /// Entries that could not be inserted: for a NAT, a tuple clash it could not resolve (no port left).
    public var insertFailed: Int64 = 0
    public var drop: Int64 = 0
    public var earlyDrop: Int64 = 0
    public var error: Int64 = 0
    public var searchRestart: Int64 = 0
    public var clashResolve: Int64 = 0
    public var chainTooLong: Int64 = 0

    public init() {}

    public static func + (a: Self, b: Self) -> Self {
        var s = Self()
        s.found = a.found &+ b.found
        s.invalid = a.invalid &+ b.invalid
        s.insert = a.insert &+ b.insert
        s.insertFailed = a.insertFailed &+ b.insertFailed
        s.drop = a.drop &+ b.drop
        s.earlyDrop = a.earlyDrop &+ b.earlyDrop
        s.error = a.error &+ b.error
        s.searchRestart = a.searchRestart &+ b.searchRestart
        s.clashResolve = a.clashResolve &+ b.clashResolve
        s.chainTooLong = a.chainTooLong &+ b.chainTooLong
        return s
    }
}
