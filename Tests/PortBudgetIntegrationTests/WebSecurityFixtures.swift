import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Certificates made with the real `openssl` for one test: a CA, a server
/// certificate for 127.0.0.1 signed by it, a client certificate signed by it,
/// an expired client certificate, and a client certificate from a CA the
/// server does not know.
final class TLSMaterial {
    let directory: URL

    init() throws {
        for program in ["/usr/bin/openssl", "/usr/bin/curl", "/usr/bin/python3"] { try ExporterProcess.require(program) }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("pbtls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try makeCA("ca")
        try makeCA("otherca")
        try issue("server", by: "ca", subject: "/CN=portbudget-server",
                  extensions: "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
        try issue("client", by: "ca", subject: "/CN=prometheus", extensions: "extendedKeyUsage=clientAuth")
        try issue("expired", by: "ca", subject: "/CN=prometheus-expired", extensions: "extendedKeyUsage=clientAuth", days: -1)
        try issue("stranger", by: "otherca", subject: "/CN=stranger", extensions: "extendedKeyUsage=clientAuth")
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    private func makeCA(_ name: String) throws {
        try Self.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                          "-keyout", path("\(name).key"), "-out", path("\(name).crt"), "-days", "2", "-subj", "/CN=\(name)"])
    }

    /// A key and a certificate NAME.key/NAME.crt signed by CA; negative days: already expired.
    func issue(_ name: String, by ca: String, subject: String, extensions: String, days: Int = 2) throws {
        try Self.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                          "-keyout", path("\(name).key"), "-out", path("\(name).csr"), "-subj", subject])
        try extensions.write(toFile: path("\(name).ext"), atomically: true, encoding: .utf8)
        try Self.openssl(["x509", "-req", "-in", path("\(name).csr"), "-CA", path("\(ca).crt"), "-CAkey", path("\(ca).key"),
                          "-CAcreateserial", "-out", path("\(name).crt"), "-days", "\(days)", "-extfile", path("\(name).ext")])
    }

    static func openssl(_ arguments: [String]) throws {
        let output = Command.run(["/usr/bin/openssl"] + arguments)
        guard output.status == 0 else { throw Failure("openssl \(arguments.first ?? "") failed: \(output.stderr)") }
    }

    /// A bcrypt hash of `password` at cost 10, from Python's crypt module
    /// (libxcrypt, as htpasswd -B would make it); `$2y$` when asked, as htpasswd writes.
    static func bcrypt(_ password: String, prefix2y: Bool = false) throws -> String {
        let output = Command.run(["/usr/bin/python3", "-W", "ignore", "-c",
                                  "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1024)))",
                                  password])
        let hash = output.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard output.status == 0, hash.hasPrefix("$2b$10$") else { throw Failure("python3 crypt failed: \(output.stderr)") }
        return prefix2y ? "$2y$" + hash.dropFirst(4) : hash
    }
}

/// `portbudget serve --web.config.file` on host loopback, on a port the kernel picks.
final class SecuredServe {
    let process: ExporterProcess
    let port: Int
    let webConfig: String

    init(webConfig: String, in directory: URL, arguments: [String] = []) throws {
        self.webConfig = directory.appendingPathComponent("web-\(UUID().uuidString.prefix(8)).yml").path
        try webConfig.write(toFile: self.webConfig, atomically: true, encoding: .utf8)
        process = try ExporterProcess([Binaries.portbudget, "serve", "--listen", "127.0.0.1:0",
                                       "--web.config.file", self.webConfig] + arguments)
        let process = self.process
        port = try process.await("the listening address in the log") { () -> Int? in
            guard let range = process.stderrText.range(of: #"127\.0\.0\.1:\d+"#, options: .regularExpression) else { return nil }
            return Int(process.stderrText[range].split(separator: ":")[1])
        }
    }

    var pid: Int32 { process.process.processIdentifier }

    /// Replaces the web config and sends SIGHUP.
    func reload(_ text: String) throws {
        try text.write(toFile: webConfig, atomically: true, encoding: .utf8)
        kill(pid, SIGHUP)
    }

    /// A field of /proc/PID/status given in kB, in bytes.
    func statusBytes(_ field: String) -> Int? { ProcessProbe.statusBytes(pid, field) }

    func openDescriptors() -> Int { ProcessProbe.openDescriptors(pid) }

    func stop() throws {
        let stopped = try XCTUnwrap(process.stop(SIGTERM), "serve still running 5 s after SIGTERM")
        XCTAssertEqual(stopped.status, 0, process.stderrText)
    }
}

/// One curl request: the HTTP status (0 when no HTTP answer: TLS refused,
/// connection cut), the response headers, the body, and curl's verbose log.
struct CurlResult {
    var status: Int
    var headers: String
    var body: String
    var log: String
    var exit: Int32

    static func get(_ url: String, options: [String] = [], maxTime: Int = 10) -> CurlResult {
        let headerFile = FileManager.default.temporaryDirectory.appendingPathComponent("pbcurl-\(UUID().uuidString)").path
        defer { unlink(headerFile) }
        let output = Command.run(["/usr/bin/curl", "-sS", "-v", "--max-time", "\(maxTime)", "-D", headerFile,
                                  "-o", "-", "-w", "\n%{http_code}"] + options + [url], timeout: TimeInterval(maxTime + 5))
        var lines = output.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.popLast() ?? "") ?? 0
        return CurlResult(status: status, headers: (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? "",
                          body: lines.joined(separator: "\n"), log: output.stderr, exit: output.status)
    }
}
