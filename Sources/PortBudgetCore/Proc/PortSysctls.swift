/// The port-related sysctls of one network namespace.
public struct PortSysctls: Sendable, Equatable {
    /// `ip_local_port_range`, inclusive.
    public var rangeLow: UInt16
    public var rangeHigh: UInt16
    /// `ip_local_reserved_ports`, as inclusive ranges (any ports, inside the range or not).
    public var reserved: [ClosedRange<UInt16>]
    /// `tcp_tw_reuse`: 0 off, 1 on, 2 loopback only (the default).
    public var tcpTwReuse: Int
    /// `tcp_timestamps`: reuse of TIME_WAIT needs timestamps (any non-zero value).
    public var tcpTimestamps: Int
    /// `tcp_fin_timeout`, seconds: how long an orphaned FIN_WAIT2 socket holds its port.
    public var tcpFinTimeoutSeconds: Int
    /// `tcp_tw_reuse_delay` (6.13+), milliseconds; nil when the kernel does not have it.
    public var tcpTwReuseDelayMs: Int?

    public init(rangeLow: UInt16, rangeHigh: UInt16, reserved: [ClosedRange<UInt16>] = [],
                tcpTwReuse: Int = 2, tcpTimestamps: Int = 1, tcpFinTimeoutSeconds: Int = 60,
                tcpTwReuseDelayMs: Int? = nil) {
        self.rangeLow = rangeLow
        self.rangeHigh = rangeHigh
        self.reserved = reserved
        self.tcpTwReuse = tcpTwReuse
        self.tcpTimestamps = tcpTimestamps
        self.tcpFinTimeoutSeconds = tcpFinTimeoutSeconds
        self.tcpTwReuseDelayMs = tcpTwReuseDelayMs
    }

    /// The reuse delay the kernel applies: the sysctl, or one second on kernels
    /// older than 6.13, which hard-coded it.
    public var effectiveTwReuseDelayMs: Int { tcpTwReuseDelayMs ?? 1000 }

    /// Reserved ports that fall inside the range: those are the ones autobind skips.
    public var reservedInRange: PortBitmap {
        var map = PortBitmap(low: rangeLow, high: rangeHigh)
        for r in reserved {
            let lo = max(r.lowerBound, rangeLow), hi = min(r.upperBound, rangeHigh)
            if lo <= hi { for p in lo...hi { map.insert(p) } }
        }
        return map
    }
}

/// Pure parsers for the sysctl files. Each takes the text and the file's
/// name, and throws a `ParseError` naming that file. Like the /proc/net
/// files, a sysctl file is refused when empty or without its final newline
/// (`KernelText.requireComplete`): a cut-short "32768\t609" must not pass
/// for a port range.
public enum SysctlParser {
    /// `ip_local_port_range`: two integers, tab- or space-separated, low ≤ high, both 1–65535.
    public static func portRange(_ text: String, file: String = "sys/net/ipv4/ip_local_port_range")
        throws -> (low: UInt16, high: UInt16)
    {
        try KernelText.requireComplete(text, file: file)
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
        guard fields.count == 2 else {
            throw ParseError(file: file, "expected two port numbers, found \(fields.count) fields")
        }
        guard let low = port(fields[0]), let high = port(fields[1]) else {
            throw ParseError(file: file, "\"\(trimmed(text))\" is not two ports between 1 and 65535")
        }
        guard low <= high else { throw ParseError(file: file, "low port \(low) is above high port \(high)") }
        return (low, high)
    }

    /// `ip_local_reserved_ports`: empty, or a comma list of ports and `a-b` ranges.
    public static func reservedPorts(_ text: String, file: String = "sys/net/ipv4/ip_local_reserved_ports")
        throws -> [ClosedRange<UInt16>]
    {
        try KernelText.requireComplete(text, file: file)
        let body = trimmed(text)
        if body.isEmpty { return [] }
        var out: [ClosedRange<UInt16>] = []
        for item in body.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = item.split(separator: "-", omittingEmptySubsequences: false)
            switch bounds.count {
            case 1:
                guard let p = port(bounds[0], allowZero: true) else {
                    throw ParseError(file: file, "\"\(item)\" is not a port")
                }
                out.append(p...p)
            case 2:
                guard let a = port(bounds[0], allowZero: true), let b = port(bounds[1], allowZero: true), a <= b else {
                    throw ParseError(file: file, "\"\(item)\" is not a port range a-b with a ≤ b")
                }
                out.append(a...b)
            default:
                throw ParseError(file: file, "\"\(item)\" is not a port or a range")
            }
        }
        return out
    }

    /// A file holding one integer.
    public static func integer(_ text: String, file: String) throws -> Int {
        try KernelText.requireComplete(text, file: file)
        guard let value = Int(trimmed(text)) else {
            throw ParseError(file: file, "\"\(trimmed(text))\" is not an integer")
        }
        return value
    }

    static func port<S: StringProtocol>(_ s: S, allowZero: Bool = false) -> UInt16? {
        guard let v = UInt16(s), allowZero || v > 0 else { return nil }
        return v
    }

    /// Without leading and trailing ASCII whitespace (a sysctl value ends in
    /// a newline); by bytes, as this runs for every sysctl of every namespace.
    static func trimmed(_ s: String) -> String {
        let utf8 = s.utf8
        func blank(_ b: UInt8) -> Bool { b == 0x20 || (0x09...0x0d).contains(b) }
        guard let first = utf8.firstIndex(where: { !blank($0) }), let last = utf8.lastIndex(where: { !blank($0) }) else {
            return ""
        }
        return String(s[first...last])
    }
}
