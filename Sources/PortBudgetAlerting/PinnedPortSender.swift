import Glibc
import PortBudgetSockets

/// Posts to Alertmanager from an explicitly chosen local port outside the
/// ephemeral range. When the host has no ephemeral port left — exactly when
/// an alert matters — connect() with an automatic port fails; a bind() to an
/// explicit port does not use the ephemeral pool at all. Ports are rotated so
/// a previous delivery's TIME_WAIT does not block the next. Plain HTTP only:
/// this is the last-resort path (async-http-client is the first).
struct PinnedPortSender: Sendable {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let sourcePorts: ClosedRange<UInt16>
    let timeoutMs: Int32

    /// Sends one HTTP/1.1 request and returns the response status code.
    func post(ip: String, port: Int, hostHeader: String, path: String, body: [UInt8], attempt: Int) throws -> Int {
        guard let destination = SocketAddress(host: ip, port: UInt16(port)) else {
            throw Failure(description: "\(ip) is not an IP address")
        }
        let wildcard = destination.family == AF_INET6 ? "::" : "0.0.0.0"
        let count = sourcePorts.count
        var lastError = "no source port in \(sourcePorts.lowerBound)-\(sourcePorts.upperBound) was free"
        for i in 0..<count {
            let sourcePort = sourcePorts.lowerBound + UInt16((attempt + i) % count)
            let fd: Int32
            do {
                fd = try SocketFactory.connectTCP(to: destination, from: SocketAddress(host: wildcard, port: sourcePort),
                                                  reuseAddress: true, timeoutMs: timeoutMs)
            } catch let failure as SocketFailure {
                lastError = "from port \(sourcePort): \(failure)"
                // In use, or its 4-tuple still in TIME_WAIT: the next port may do.
                if [EADDRINUSE, EADDRNOTAVAIL].contains(failure.errno) { continue }
                // A timeout or a refusal is the destination's, not the port's: another
                // port would only wait again (8 × the timeout with Alertmanager black-holed).
                throw Failure(description: lastError)
            }
            defer { close(fd) }
            return try exchange(fd, request: request(hostHeader: hostHeader, path: path, body: body))
        }
        throw Failure(description: lastError)
    }

    func request(hostHeader: String, path: String, body: [UInt8]) -> [UInt8] {
        let head = "POST \(path) HTTP/1.1\r\nHost: \(hostHeader)\r\nUser-Agent: portbudget\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        return Array(head.utf8) + body
    }

    /// Writes the request and reads until the status line is complete.
    func exchange(_ fd: Int32, request: [UInt8]) throws -> Int {
        var offset = 0
        while offset < request.count {
            guard wait(fd, for: Int16(POLLOUT)) else { throw Failure(description: "timed out sending") }
            let n = request[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                throw Failure(description: "send: errno \(errno)")
            }
            offset += n
        }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1024)
        while !response.contains(UInt8(ascii: "\n")) {
            guard wait(fd, for: Int16(POLLIN)) else { throw Failure(description: "timed out waiting for the answer") }
            let n = recv(fd, &chunk, chunk.count, 0)
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                throw Failure(description: "recv: errno \(errno)")
            }
            if n == 0 { break }
            response += chunk[0..<n]
            if response.count > 64 * 1024 { break }
        }
        // "HTTP/1.1 200 OK"
        let line = String(decoding: response.prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        let fields = line.split(separator: " ")
        guard fields.count >= 2, fields[0].hasPrefix("HTTP/"), let status = Int(fields[1]) else {
            throw Failure(description: "not an HTTP answer: \"\(line.prefix(60))\"")
        }
        return status
    }

    func wait(_ fd: Int32, for events: Int16) -> Bool {
        var p = pollfd(fd: fd, events: events, revents: 0)
        while true {
            let r = poll(&p, 1, timeoutMs)
            if r < 0 && errno == EINTR { continue }
            return r > 0
        }
    }
}
