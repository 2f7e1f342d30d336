#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address stored inline (no allocation), hashable, so it can
/// key a group on the hot path. IPv4-mapped IPv6 addresses are folded into
/// IPv4 on construction: the kernel hashes those connections as IPv4.
public struct IPAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    public enum Family: UInt8, Sendable { case v4 = 2, v6 = 10 }

    /// Network-order bytes 0–7 and 8–15 of the IPv6 form; IPv4 lives in the low 32 bits of `low`.
    public let high: UInt64
    public let low: UInt64
    public let family: Family

    private init(high: UInt64, low: UInt64, family: Family) {
        self.high = high
        self.low = low
        self.family = family
    }

    public init(v4 value: UInt32) {
        self.init(high: 0, low: UInt64(value), family: .v4)
    }

    /// Builds an IPv6 address, folding `::ffff:a.b.c.d` to IPv4.
    public init(v6High: UInt64, v6Low: UInt64) {
        if v6High == 0 && (v6Low >> 32) == 0xffff {
            self.init(v4: UInt32(truncatingIfNeeded: v6Low))
        } else {
            self.init(high: v6High, low: v6Low, family: .v6)
        }
    }

    /// Reads an address from 16 network-order bytes as laid out in
    /// `inet_diag_sockid` (IPv4 in the first four bytes).
    public init(diagBytes p: UnsafeRawBufferPointer, offset: Int, family: Family) {
        if family == .v4 {
            self.init(v4: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        } else {
            self.init(
                v6High: UInt64(bigEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt64.self)),
                v6Low: UInt64(bigEndian: p.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)))
        }
    }

    /// Parses dotted IPv4 or RFC 4291 IPv6 text; nil when it is neither.
    public init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.init(v4: UInt32(bigEndian: v4.s_addr))
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let (h, l) = withUnsafeBytes(of: &v6) { raw in
            (UInt64(bigEndian: raw.loadUnaligned(as: UInt64.self)),
             UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        }
        self.init(v6High: h, v6Low: l)
    }

    /// True for 127.0.0.0/8 and ::1 — the addresses `tcp_tw_reuse = 2` treats as loopback.
    public var isLoopback: Bool {
        switch family {
        case .v4: return (low >> 24) & 0xff == 127
        case .v6: return high == 0 && low == 1
        }
    }

    /// Canonical text: dotted quad, or RFC 5952 IPv6 (as produced by inet_ntop).
    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch family {
        case .v4:
            var addr = in_addr(s_addr: UInt32(truncatingIfNeeded: low).bigEndian)
            _ = inet_ntop(AF_INET, &addr, &buffer, socklen_t(buffer.count))
        case .v6:
            var bytes = (high.bigEndian, low.bigEndian)
            _ = withUnsafeBytes(of: &bytes) { raw in
                inet_ntop(AF_INET6, raw.baseAddress, &buffer, socklen_t(buffer.count))
            }
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        (a.family.rawValue, a.high, a.low) < (b.family.rawValue, b.high, b.low)
    }
}
