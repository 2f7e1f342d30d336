#if canImport(Glibc)
import Glibc
#endif
import PortBudgetYAML
import Yams

/// `--web.config.file`: who may read what `serve` serves, in the Prometheus
/// exporter toolkit's web configuration format (the same keys with the same
/// meaning, so the file that protects node_exporter protects portbudget).
/// Unknown keys are errors, as in the toolkit. Parsing is pure: YAML text in,
/// a validated value or a `WebConfigError` naming the file, line and key out.
/// Certificate files are read when a TLS context is built, not here.
public struct WebConfig: Sendable, Equatable {
    public struct TLS: Sendable, Equatable {
        /// PEM, from a file (re-read when it changes) or inline in the config.
        public enum Source: Sendable, Equatable {
            case file(String)
            case inline(String)
        }

        /// The toolkit's names, which are Go's `tls.ClientAuthType`s.
        public enum ClientAuth: String, Sendable, CaseIterable {
            case noClientCert = "NoClientCert"
            case requestClientCert = "RequestClientCert"
            case requireAnyClientCert = "RequireAnyClientCert"
            case verifyClientCertIfGiven = "VerifyClientCertIfGiven"
            case requireAndVerifyClientCert = "RequireAndVerifyClientCert"

            /// The client certificate is checked against `client_ca_file`.
            var verifies: Bool { self == .verifyClientCertIfGiven || self == .requireAndVerifyClientCert }
        }

        public enum Version: String, Sendable, Comparable, CaseIterable {
            case tls10 = "TLS10", tls11 = "TLS11", tls12 = "TLS12", tls13 = "TLS13"
            var rank: Int { Self.allCases.firstIndex(of: self)! }
            public static func < (a: Self, b: Self) -> Bool { a.rank < b.rank }
        }

        public var certificate: Source
        public var key: Source
        public var clientAuth = ClientAuth.noClientCert
        public var clientCA: Source?
        public var minVersion = Version.tls12
        public var maxVersion = Version.tls13
        /// IANA names as Go spells them (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`);
        /// empty: the TLS library's defaults. TLS 1.3 suites are not configurable (as in Go).
        public var cipherSuites: [String] = []
        /// Go names: CurveP256, CurveP384, CurveP521, X25519; empty: the library's defaults.
        public var curvePreferences: [String] = []
        /// The line of each certificate key (`cert_file`, `key`, …), so that a
        /// file that cannot be loaded is reported where the config names it.
        public var lines: [String: Int] = [:]
    }

    /// The file the configuration came from, for messages.
    public var file: String
    /// nil: plain HTTP.
    public var tls: TLS?
    /// User name → bcrypt hash. Empty: no basic authentication.
    public var basicAuthUsers: [String: String] = [:]
    /// Added to every response, in the order given.
    public var headers: [(name: String, value: String)] = []
    /// `/healthz` answers without basic-auth credentials (a client certificate
    /// the TLS handshake requires is still required). The toolkit has no such
    /// key; portbudget's own keys live under `portbudget_server_config` so
    /// that none can collide with a future toolkit key.
    public var healthzWithoutAuth = false

    public static func == (a: Self, b: Self) -> Bool {
        a.file == b.file && a.tls == b.tls && a.basicAuthUsers == b.basicAuthUsers
            && a.headers.map { "\($0.name):\($0.value)" } == b.headers.map { "\($0.name):\($0.value)" }
            && a.healthzWithoutAuth == b.healthzWithoutAuth
    }

    /// A web config larger than this is not a web config.
    public static let maximumFileBytes = 1 << 20
    /// The highest bcrypt cost accepted. Each step doubles the work: cost 10
    /// takes about 70 ms, 16 about 4.5 s of one core per check of a password
    /// not yet cached. Above it, one check could hold the password checker for minutes.
    public static let maximumBcryptCost = 16
    /// The response headers the toolkit lets a file set, with the values it allows (nil: any).
    static let allowedHeaders: [(name: String, values: [String]?)] = [
        ("Content-Security-Policy", nil),
        ("X-Frame-Options", ["deny", "sameorigin"]),
        ("X-Content-Type-Options", ["nosniff"]),
        ("X-XSS-Protection", nil),
        ("Strict-Transport-Security", nil),
    ]

    /// Reads and validates `path`.
    public static func load(path: String) throws -> WebConfig {
        try parse(try readFile(path), file: path)
    }

    /// The file's text: opened non-blocking and refused unless it is a regular
    /// file, so a FIFO named by mistake is an error, not a hang.
    static func readFile(_ path: String, limit: Int = maximumFileBytes) throws -> String {
        func failure(_ reason: String) -> WebConfigError { WebConfigError(file: path, line: nil, reason) }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw failure("cannot read the file: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw failure("cannot read the file: \(String(cString: strerror(errno)))") }
        guard status.st_mode & S_IFMT == S_IFREG else { throw failure("cannot read the file: not a regular file") }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw failure("cannot read the file: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            bytes += chunk[0..<n]
            guard bytes.count <= limit else { throw failure("larger than \(limit) bytes") }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    public static func parse(_ text: String, file: String) throws -> WebConfig {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            var line: Int?
            if case let .scanner(_, _, mark, _) = error { line = mark.line }
            if case let .parser(_, _, mark, _) = error { line = mark.line }
            let first = "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)"
            throw WebConfigError(file: file, line: line, "not valid YAML: \(first)")
        }
        var config = WebConfig(file: file)
        // An empty file is the toolkit's "no TLS, no auth".
        guard let root else { return config }
        let reader = ConfigReader(file: file)
        for (k, v) in try reader.section(root, key: "the top level") {
            switch try reader.key(k) {
            case "tls_server_config":
                config.tls = try reader.tls(v)
            case "basic_auth_users":
                for (user, hash) in try reader.section(v, key: "basic_auth_users") {
                    let name = try reader.key(user)
                    config.basicAuthUsers[name] = try reader.bcryptHash(hash, key: "basic_auth_users.\(name)")
                }
            case "http_server_config":
                config.headers = try reader.httpServerConfig(v)
            case "rate_limit":
                throw reader.fail(k, "rate_limit: not supported by portbudget (the connection cap and request deadlines bound the load; see docs/web-config.md)")
            case "portbudget_server_config":
                for (pk, pv) in try reader.section(v, key: "portbudget_server_config") {
                    switch try reader.key(pk) {
                    case "healthz_without_auth":
                        config.healthzWithoutAuth = try reader.bool(pv, key: "portbudget_server_config.healthz_without_auth")
                    case let other:
                        throw reader.unknown(pk, "portbudget_server_config.\(other)", expected: ["healthz_without_auth"])
                    }
                }
            case let other:
                throw reader.unknown(k, other, expected: [
                    "tls_server_config", "http_server_config", "basic_auth_users", "rate_limit", "portbudget_server_config",
                ])
            }
        }
        return config
    }
}

/// A web configuration problem: file, line and what was wrong, on one line.
public typealias WebConfigError = ConfigError

/// What only the web config reads: sections that may be empty, lists of
/// strings, bcrypt hashes, TLS and HTTP settings.
extension ConfigReader {
    /// `key:` with nothing after it is an empty section, as in the toolkit.
    func section(_ node: Node, key: String) throws -> Node.Mapping {
        if let scalar = node.scalar, scalar.string.isEmpty || scalar.string == "null" || scalar.string == "~" {
            return Node.Mapping([])
        }
        return try mapping(node, key: key)
    }

    func strings(_ node: Node, key: String) throws -> [String] {
        try sequence(node, key: key).map { try string($0, key: "\(key)[]") }
    }

    /// `$2a$`, `$2b$` or `$2y$`, a two-digit cost, 53 characters of salt and hash.
    func bcryptHash(_ node: Node, key: String) throws -> String {
        let hash = try string(node, key: key)
        let bytes = Array(hash.utf8)
        let alphabet = Set("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)
        guard bytes.count == 60, hash.hasPrefix("$2a$") || hash.hasPrefix("$2b$") || hash.hasPrefix("$2y$"),
              bytes[6] == UInt8(ascii: "$"), let cost = Int(String(decoding: bytes[4..<6], as: UTF8.self)),
              bytes[7...].allSatisfy(alphabet.contains)
        else {
            throw fail(node, "\(key) is not a bcrypt hash ($2y$, $2b$ or $2a$, 60 characters; see docs/web-config.md for making one)")
        }
        guard (4...WebConfig.maximumBcryptCost).contains(cost) else {
            throw fail(node, "\(key): bcrypt cost \(cost) is outside 4...\(WebConfig.maximumBcryptCost)")
        }
        return hash
    }

    func tls(_ node: Node) throws -> WebConfig.TLS {
        var cert: (WebConfig.TLS.Source, Node)?, key: (WebConfig.TLS.Source, Node)?, ca: (WebConfig.TLS.Source, Node)?
        var clientAuth: (WebConfig.TLS.ClientAuth, Node)?
        var minVersion = WebConfig.TLS.Version.tls12, maxVersion = WebConfig.TLS.Version.tls13
        var versionNode: Node?
        var suites: [String] = [], curves: [String] = []
        func source(_ existing: (WebConfig.TLS.Source, Node)?, _ new: WebConfig.TLS.Source, _ k: Node,
                    _ inlineKey: String, _ fileKey: String) throws -> (WebConfig.TLS.Source, Node) {
            if existing != nil {
                throw fail(k, "tls_server_config: \(inlineKey) and \(fileKey) are mutually exclusive")
            }
            return (new, k)
        }
        let prefix = "tls_server_config"
        for (k, v) in try section(node, key: prefix) {
            let name = try self.key(k)
            switch name {
            case "cert_file": cert = try source(cert, .file(try path(v, "\(prefix).cert_file")), k, "cert", "cert_file")
            case "cert": cert = try source(cert, .inline(try nonEmpty(v, "\(prefix).cert")), k, "cert", "cert_file")
            case "key_file": key = try source(key, .file(try path(v, "\(prefix).key_file")), k, "key", "key_file")
            case "key": key = try source(key, .inline(try nonEmpty(v, "\(prefix).key")), k, "key", "key_file")
            case "client_ca_file":
                ca = try source(ca, .file(try path(v, "\(prefix).client_ca_file")), k, "client_ca", "client_ca_file")
            case "client_ca":
                ca = try source(ca, .inline(try nonEmpty(v, "\(prefix).client_ca")), k, "client_ca", "client_ca_file")
            case "client_auth_type":
                let text = try string(v, key: "\(prefix).client_auth_type")
                guard let value = WebConfig.TLS.ClientAuth(rawValue: text) else {
                    throw fail(v, "\(prefix).client_auth_type: \"\(text)\" is not one of \(WebConfig.TLS.ClientAuth.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                clientAuth = (value, v)
            case "min_version":
                minVersion = try version(v, "\(prefix).min_version")
                versionNode = v
            case "max_version":
                maxVersion = try version(v, "\(prefix).max_version")
                versionNode = versionNode ?? v
            case "cipher_suites":
                suites = try strings(v, key: "\(prefix).cipher_suites")
                for (index, suite) in suites.enumerated() where TLSSettings.cipher(named: suite) == nil {
                    throw fail(v.sequence?[index] ?? v, "\(prefix).cipher_suites: \"\(suite)\" is not a TLS 1.2 cipher suite portbudget's TLS library offers (\(TLSSettings.cipherNames.joined(separator: ", ")))")
                }
            case "curve_preferences":
                curves = try strings(v, key: "\(prefix).curve_preferences")
                for (index, curve) in curves.enumerated() where TLSSettings.curve(named: curve) == nil {
                    throw fail(v.sequence?[index] ?? v, "\(prefix).curve_preferences: \"\(curve)\" is not one of \(TLSSettings.curveNames.joined(separator: ", "))")
                }
            case "prefer_server_cipher_suites":
                // Go ignores it since 1.18 and so does the toolkit: the server's order is used.
                _ = try bool(v, key: "\(prefix).prefer_server_cipher_suites")
            case "client_allowed_sans":
                throw fail(k, "\(prefix).client_allowed_sans: not supported by portbudget; issue client certificates from a CA of their own instead")
            default:
                throw unknown(k, "\(prefix).\(name)", expected: [
                    "cert_file", "key_file", "cert", "key", "client_auth_type", "client_ca_file", "client_ca",
                    "min_version", "max_version", "cipher_suites", "curve_preferences", "prefer_server_cipher_suites",
                ])
            }
        }
        guard let cert else { throw fail(node, "\(prefix): cert_file (or cert) is required") }
        guard let key else { throw fail(node, "\(prefix): key_file (or key) is required") }
        let auth = clientAuth?.0 ?? .noClientCert
        if auth.verifies && ca == nil {
            throw fail(clientAuth?.1 ?? node, "\(prefix).client_auth_type \(auth.rawValue) needs client_ca_file to verify client certificates against")
        }
        if let ca, !auth.verifies {
            throw fail(ca.1, "\(prefix): a client CA is given but client_auth_type is \(auth.rawValue), which does not verify client certificates (use VerifyClientCertIfGiven or RequireAndVerifyClientCert)")
        }
        if minVersion > maxVersion {
            throw fail(versionNode ?? node, "\(prefix): min_version \(minVersion.rawValue) is above max_version \(maxVersion.rawValue)")
        }
        var lines: [String: Int] = [:]
        for (_, keyNode) in [cert, key] + (ca.map { [$0] } ?? []) {
            lines[(try? self.key(keyNode)) ?? ""] = keyNode.mark?.line
        }
        return WebConfig.TLS(certificate: cert.0, key: key.0, clientAuth: auth, clientCA: ca?.0, minVersion: minVersion,
                             maxVersion: maxVersion, cipherSuites: suites, curvePreferences: curves, lines: lines)
    }

    func nonEmpty(_ node: Node, _ key: String) throws -> String {
        let text = try string(node, key: key)
        guard !text.isEmpty else { throw fail(node, "\(key) is empty") }
        return text
    }

    /// A file named by the config; relative to the config file's directory,
    /// as the toolkit resolves it (so a config and its certificates can move together).
    func path(_ node: Node, _ key: String) throws -> String {
        let text = try nonEmpty(node, key)
        guard !text.hasPrefix("/"), let slash = file.lastIndex(of: "/") else { return text }
        return String(file[...slash]) + text
    }

    func version(_ node: Node, _ key: String) throws -> WebConfig.TLS.Version {
        let text = try string(node, key: key)
        guard let version = WebConfig.TLS.Version(rawValue: text) else {
            throw fail(node, "\(key): \"\(text)\" is not one of TLS10, TLS11, TLS12, TLS13")
        }
        return version
    }

    func httpServerConfig(_ node: Node) throws -> [(name: String, value: String)] {
        var headers: [(name: String, value: String)] = []
        for (k, v) in try section(node, key: "http_server_config") {
            switch try key(k) {
            case "http2":
                // HTTP/2 is never offered (scrapers speak HTTP/1.1); either value is accepted, as the toolkit accepts it.
                _ = try bool(v, key: "http_server_config.http2")
            case "headers":
                for (hk, hv) in try section(v, key: "http_server_config.headers") {
                    let name = try key(hk)
                    guard let allowed = WebConfig.allowedHeaders.first(where: { $0.name.lowercased() == name.lowercased() }) else {
                        throw fail(hk, "http_server_config.headers: \"\(name)\" cannot be set (one of: \(WebConfig.allowedHeaders.map(\.name).joined(separator: ", ")))")
                    }
                    let value = try string(hv, key: "http_server_config.headers.\(name)")
                    // Blank: unset, as in the toolkit.
                    guard !value.isEmpty else { continue }
                    if let values = allowed.values, !values.contains(value.lowercased()) {
                        throw fail(hv, "http_server_config.headers.\(name): \"\(value)\" is not one of \(values.joined(separator: ", "))")
                    }
                    guard !value.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
                        throw fail(hv, "http_server_config.headers.\(name) contains a control character")
                    }
                    headers.append((allowed.name, value))
                }
            case let other:
                throw unknown(k, "http_server_config.\(other)", expected: ["headers", "http2"])
            }
        }
        return headers
    }
}
