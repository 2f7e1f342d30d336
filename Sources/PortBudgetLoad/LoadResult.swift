import Glibc
import PortBudgetSockets

/// What a generator step achieved: how many sockets it made, and the error
/// that stopped it, if any. Printed as one JSON line for the test harness.
public struct LoadResult: Sendable {
    public var made = 0
    public var failure: SocketFailure?

    public init() {}

    public var jsonLine: String {
        let error = failure.map { "\"\($0.errnoName)\"" } ?? "null"
        let call = failure.map { "\"\($0.call)\"" } ?? "null"
        return "{\"made\":\(made),\"error\":\(error),\"call\":\(call)}"
    }

    /// Writes the line to stdout unbuffered, so a parent reading the pipe sees it at once.
    public func emit() {
        var text = jsonLine + "\n"
        text.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
    }
}

/// Blocks until standard input reaches EOF: the parent releases held
/// sockets by closing the pipe (or by ending the process).
public func waitForStdinEOF() {
    var byte: UInt8 = 0
    while true {
        let n = read(0, &byte, 1)
        if n == 0 || (n < 0 && errno != EINTR) { return }
    }
}

/// True once standard input is at EOF, without blocking.
public func stdinClosed() -> Bool {
    var p = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
    guard poll(&p, 1, 0) > 0 else { return false }
    var byte: UInt8 = 0
    return read(0, &byte, 1) <= 0
}
