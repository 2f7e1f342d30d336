import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A deliberately plain HTTP/1.1 client over blocking loopback sockets, so
/// the tests see exactly the bytes the server sends (no transparent gzip
/// decoding, no connection pooling) and can misbehave on purpose.
struct RawHTTPClient {
    struct Response {
        var status: Int
        var headers: [String: String]  // lower-cased names
        var body: Data
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let port: Int

    /// Connects and returns the socket; the caller closes it.
    func connect(timeoutSeconds: Int = 10) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw Failure(description: "connect: \(String(cString: strerror(e)))")
        }
        return fd
    }

    static func send(_ fd: Int32, _ text: String) throws {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(description: "send: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    /// Everything until the server closes (or the receive timeout passes).
    static func readToEnd(_ fd: Int32) -> (data: Data, error: Int32) {
        var data = Data()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { data.append(contentsOf: chunk[0..<n]); continue }
            return (data, n == 0 ? 0 : errno)
        }
    }

    /// Exactly one response (its head, then Content-Length bytes), leaving
    /// the connection open for the next.
    static func readResponse(_ fd: Int32) throws -> Response {
        var data = Data()
        var chunk = [UInt8](repeating: 0, count: 1)
        while data.range(of: Data("\r\n\r\n".utf8)) == nil {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 1, 0) }
            guard n == 1 else { throw Failure(description: "connection ended in a response head: \(n), errno \(errno)") }
            data.append(chunk[0])
        }
        var response = try parse(data)
        var remaining = Int(response.headers["content-length"] ?? "") ?? 0
        var body = [UInt8](repeating: 0, count: 65536)
        while remaining > 0 {
            let n = body.withUnsafeMutableBytes { recv(fd, $0.baseAddress, min(remaining, $0.count), 0) }
            guard n > 0 else { throw Failure(description: "connection ended in a response body") }
            response.body.append(contentsOf: body[0..<n])
            remaining -= n
        }
        return response
    }

    /// Whether the server closed the connection, waiting up to `timeout` seconds.
    static func closedByServer(_ fd: Int32, within timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        var scratch = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 50) > 0 else { continue }
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { return true }
        }
        return false
    }

    /// A request that keeps the connection open (HTTP/1.1's default).
    static func keepAliveRequest(_ path: String, headers: [String: String] = [:]) -> String {
        var text = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { text += "\(name): \(value)\r\n" }
        return text + "\r\n"
    }

    static func request(_ method: String, _ path: String, headers: [String: String] = [:]) -> String {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { text += "\(name): \(value)\r\n" }
        return text + "\r\n"
    }

    static func parse(_ data: Data) throws -> Response {
        guard let split = data.range(of: Data("\r\n\r\n".utf8)) else {
            throw Failure(description: "no complete response head in \(data.count) bytes")
        }
        let head = String(decoding: data[..<split.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = head[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw Failure(description: "bad status line \(head[0])")
        }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Response(status: status, headers: headers, body: Data(data[split.upperBound...]))
    }

    /// One request on its own connection.
    func fetch(_ path: String, method: String = "GET", headers: [String: String] = [:]) throws -> Response {
        let fd = try connect()
        defer { close(fd) }
        try Self.send(fd, Self.request(method, path, headers: headers))
        return try Self.parse(Self.readToEnd(fd).data)
    }

    /// Decodes a gzip body with the system's gzip, an implementation independent of the server's.
    static func gunzip(_ data: Data) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["gzip", "-dc"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        input.fileHandleForWriting.write(data)
        try input.fileHandleForWriting.close()
        let decoded = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Failure(description: "gzip -dc exited \(process.terminationStatus)") }
        return decoded
    }
}
