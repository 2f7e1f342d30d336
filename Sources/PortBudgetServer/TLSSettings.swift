#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// Turns a `WebConfig.TLS` into NIOSSL contexts, and keeps the context fresh:
/// every new connection asks for `current()`, which compares the certificate,
/// key and CA files' identity (device, inode, size, times — a Kubernetes
/// Secret update swaps a symlink, so the inode changes) with those the
/// context was built from, and rebuilds it when any changed. Rotation needs
/// no restart and costs a few stat() calls per connection. A rebuild that
/// fails (a key that does not match its certificate, a file half written)
/// keeps the previous context and is not retried until the files change again.
final class TLSContextSource: Sendable {
    private struct FileIdentity: Equatable {
        var device: UInt64, inode: UInt64, size: Int64
        var modified: timespec, changed: timespec

        static func == (a: Self, b: Self) -> Bool {
            a.device == b.device && a.inode == b.inode && a.size == b.size
                && a.modified.tv_sec == b.modified.tv_sec && a.modified.tv_nsec == b.modified.tv_nsec
                && a.changed.tv_sec == b.changed.tv_sec && a.changed.tv_nsec == b.changed.tv_nsec
        }

        init?(_ path: String) {
            var status = stat()
            guard stat(path, &status) == 0 else { return nil }
            device = UInt64(status.st_dev)
            inode = UInt64(status.st_ino)
            size = Int64(status.st_size)
            modified = status.st_mtim
            changed = status.st_ctim
        }
    }

    private struct State {
        var context: NIOSSLContext
        /// The identities `context` was built from.
        var built: [FileIdentity?]
        /// The identities of the last failed rebuild, not retried.
        var failed: [FileIdentity?]?
    }

    let settings: WebConfig.TLS
    let configFile: String
    private let files: [String]
    private let state: NIOLockedValueBox<State>
    private let logger: Logger

    /// Builds the first context; throws a `WebConfigError` naming the key whose file is wrong.
    init(_ settings: WebConfig.TLS, configFile: String, logger: Logger) throws {
        self.settings = settings
        self.configFile = configFile
        self.logger = logger
        files = [settings.certificate, settings.key, settings.clientCA].compactMap {
            if case .file(let path) = $0 { return path }
            return nil
        }
        let identities = files.map(FileIdentity.init)
        let context = try Self.makeContext(settings, configFile: configFile)
        state = NIOLockedValueBox(State(context: context, built: identities, failed: nil))
    }

    /// The context for a new connection, rebuilt first if the files changed.
    func current() -> NIOSSLContext {
        let identities = files.map(FileIdentity.init)
        return state.withLockedValue { state in
            guard identities != state.built, identities != state.failed else { return state.context }
            do {
                state.context = try Self.makeContext(settings, configFile: configFile)
                state.built = identities
                state.failed = nil
                logger.info("TLS certificate files changed; new connections use them",
                            metadata: ["files": "\(files.joined(separator: ", "))"])
            } catch {
                state.failed = identities
                logger.error("TLS certificate files changed but cannot be used; keeping the previous ones",
                             metadata: ["error": "\(error)"])
            }
            return state.context
        }
    }

    /// The handler that speaks TLS on one connection.
    func makeHandler() -> NIOSSLServerHandler {
        let context = current()
        switch settings.clientAuth {
        case .requestClientCert, .requireAnyClientCert:
            // Asked for (or required) but not verified, as the toolkit's
            // Go types mean: any certificate will do.
            return NIOSSLServerHandler(context: context) { _, verdict in verdict.succeed(.certificateVerified) }
        case .noClientCert, .verifyClientCertIfGiven, .requireAndVerifyClientCert:
            return NIOSSLServerHandler(context: context)
        }
    }

    static func makeContext(_ settings: WebConfig.TLS, configFile: String) throws -> NIOSSLContext {
        func failure(_ key: String, _ reason: String) -> WebConfigError {
            WebConfigError(file: configFile, line: settings.lines[key], "tls_server_config.\(key): \(reason)")
        }
        func pem(_ source: WebConfig.TLS.Source, fileKey: String, inlineKey: String) throws -> (bytes: [UInt8], key: String) {
            switch source {
            case .inline(let text):
                return (Array(text.utf8), inlineKey)
            case .file(let path):
                do {
                    return (Array(try WebConfig.readFile(path, limit: maximumPEMBytes).utf8), fileKey)
                } catch let error as WebConfigError {
                    throw failure(fileKey, error.description)
                }
            }
        }
        let (certBytes, certKey) = try pem(settings.certificate, fileKey: "cert_file", inlineKey: "cert")
        let chain: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMBytes(certBytes) } catch {
            throw failure(certKey, "no PEM certificate could be read (\(error))")
        }
        guard !chain.isEmpty else { throw failure(certKey, "no PEM certificate in it") }
        let (keyBytes, keyKey) = try pem(settings.key, fileKey: "key_file", inlineKey: "key")
        let key: NIOSSLPrivateKey
        do { key = try NIOSSLPrivateKey(bytes: keyBytes, format: .pem) } catch {
            throw failure(keyKey, "no unencrypted PEM private key could be read (\(error))")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.shutdownTimeout = closeNotifyWait
        configuration.minimumTLSVersion = nioVersion(settings.minVersion)
        configuration.maximumTLSVersion = nioVersion(settings.maxVersion)
        if !settings.cipherSuites.isEmpty {
            configuration.cipherSuiteValues = settings.cipherSuites.compactMap(TLSSettings.cipher(named:))
        }
        if !settings.curvePreferences.isEmpty {
            configuration.curves = settings.curvePreferences.compactMap(TLSSettings.curve(named:))
        }
        switch settings.clientAuth {
        case .noClientCert:
            configuration.certificateVerification = .none
        case .requestClientCert:
            configuration.certificateVerification = .optionalVerification
        case .requireAnyClientCert:
            configuration.certificateVerification = .noHostnameVerification
        case .verifyClientCertIfGiven, .requireAndVerifyClientCert:
            configuration.certificateVerification =
                settings.clientAuth == .verifyClientCertIfGiven ? .optionalVerification : .noHostnameVerification
            guard let ca = settings.clientCA else { throw failure("client_ca_file", "required") }
            let (caBytes, caKey) = try pem(ca, fileKey: "client_ca_file", inlineKey: "client_ca")
            let roots: [NIOSSLCertificate]
            do { roots = try NIOSSLCertificate.fromPEMBytes(caBytes) } catch {
                throw failure(caKey, "no PEM certificate could be read (\(error))")
            }
            guard !roots.isEmpty else { throw failure(caKey, "no PEM certificate in it") }
            configuration.trustRoots = .certificates(roots)
        }
        if settings.clientAuth != .verifyClientCertIfGiven && settings.clientAuth != .requireAndVerifyClientCert,
           settings.clientAuth != .noClientCert {
            // Never consulted (the custom callback accepts any certificate);
            // set so that NIOSSL does not load the system store for nothing.
            configuration.trustRoots = .certificates([])
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw failure(keyKey, "the certificate and key cannot be used together (\(error))")
        }
    }

    /// How long a closing TLS connection (evicted, timed out, done) waits for
    /// the peer's close_notify before its socket is closed anyway. An evicted
    /// connection's descriptor outlives its slot by this much, so under a flood
    /// that forces evictions the process holds up to (evictions per second ×
    /// this) descriptors beyond the cap; NIOSSL's 5 s default would make that
    /// 50 times more. A peer that answers at all does so within a round trip.
    static let closeNotifyWait = TimeAmount.milliseconds(100)

    /// A PEM file larger than this is not a certificate chain or a key.
    static let maximumPEMBytes = 1 << 20

    static func nioVersion(_ version: WebConfig.TLS.Version) -> TLSVersion {
        switch version {
        case .tls10: return .tlsv1
        case .tls11: return .tlsv11
        case .tls12: return .tlsv12
        case .tls13: return .tlsv13
        }
    }
}

/// The cipher suites and curves a web config may name: Go's names (the
/// toolkit's), limited to what BoringSSL in NIOSSL offers.
enum TLSSettings {
    static let ciphers: [(name: String, value: NIOTLSCipher)] = [
        ("TLS_RSA_WITH_AES_128_CBC_SHA", .TLS_RSA_WITH_AES_128_CBC_SHA),
        ("TLS_RSA_WITH_AES_256_CBC_SHA", .TLS_RSA_WITH_AES_256_CBC_SHA),
        ("TLS_RSA_WITH_AES_128_GCM_SHA256", .TLS_RSA_WITH_AES_128_GCM_SHA256),
        ("TLS_RSA_WITH_AES_256_GCM_SHA384", .TLS_RSA_WITH_AES_256_GCM_SHA384),
        ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", .TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA),
        ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", .TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA),
        ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", .TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA),
        ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", .TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA),
        ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", .TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
        ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", .TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", .TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", .TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", .TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
        ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", .TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ]
    static var cipherNames: [String] { ciphers.map(\.name) }
    static func cipher(named name: String) -> NIOTLSCipher? { ciphers.first { $0.name == name }?.value }

    static let curves: [(name: String, value: NIOTLSCurve)] = [
        ("CurveP256", .secp256r1), ("CurveP384", .secp384r1), ("CurveP521", .secp521r1), ("X25519", .x25519),
    ]
    static var curveNames: [String] { curves.map(\.name) }
    static func curve(named name: String) -> NIOTLSCurve? { curves.first { $0.name == name }?.value }
}
