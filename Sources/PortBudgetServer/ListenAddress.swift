#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `--listen HOST:PORT`, as node_exporter takes it: `:9958` (every address),
/// `127.0.0.1:9958`, `[::1]:9958`, `localhost:9958`.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// Nil means every address.
    public var host: String?
    public var port: Int

    public init(host: String?, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses the flag; the error is one line naming what was wrong.
    public init(parsing text: String) throws(ListenAddressError) {
        guard let colon = text.lastIndex(of: ":") else {
            throw ListenAddressError("--listen \"\(text)\" has no port: expected HOST:PORT, :PORT or [IPv6]:PORT")
        }
        var host = String(text[..<colon])
        let portText = text[text.index(after: colon)...]
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw ListenAddressError("--listen \"\(text)\": port \"\(portText)\" is not a number from 0 to 65535")
        }
        if host.hasPrefix("[") || host.hasSuffix("]") {
            guard host.hasPrefix("["), host.hasSuffix("]"), host.count > 2 else {
                throw ListenAddressError("--listen \"\(text)\": unbalanced brackets around the IPv6 address")
            }
            host = String(host.dropFirst().dropLast())
            guard Self.isIPv6(host) else {
                throw ListenAddressError("--listen \"\(text)\": \"\(host)\" is not an IPv6 address")
            }
        } else if host.contains(":") {
            throw ListenAddressError("--listen \"\(text)\": put IPv6 addresses in brackets, as in [::1]:9958")
        } else if !host.isEmpty && !Self.isIPv4(host) && !Self.isHostName(host) {
            throw ListenAddressError("--listen \"\(text)\": \"\(host)\" is neither an IP address nor a host name")
        }
        self.init(host: host.isEmpty ? nil : host, port: port)
    }

    public var description: String {
        guard let host else { return ":\(port)" }
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    static func isIPv4(_ s: String) -> Bool {
        var a = in_addr()
        return inet_pton(AF_INET, s, &a) == 1
    }

    static func isIPv6(_ s: String) -> Bool {
        var a = in6_addr()
        return inet_pton(AF_INET6, s, &a) == 1
    }

    /// Letters, digits, hyphens and dots, as DNS names are written.
    static func isHostName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 253 && !s.hasPrefix("-") && !s.hasPrefix(".")
            && s.unicodeScalars.allSatisfy { $0.properties.isASCIIHexDigit || ("a"..."z").contains($0)
                || ("A"..."Z").contains($0) || $0 == "-" || $0 == "." }
    }
}

public struct ListenAddressError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}
