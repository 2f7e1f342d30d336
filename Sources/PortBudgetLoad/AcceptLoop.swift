import Glibc
import PortBudgetSockets

/// Serves listeners with poll(). `close` mode accepts and closes a
/// connection once the client has closed its end — so the client, which
/// closed first, keeps the TIME_WAIT. `hold` accepts and never closes,
/// leaving clients that close in FIN_WAIT2. `none` never accepts: connections
/// wait in the listen queue, costing this process no descriptor.
public final class AcceptLoop {
    public enum Mode: String, Sendable, CaseIterable { case none, hold, close }

    private let mode: Mode
    private var listeners: [Int32] = []
    private var clients: [Int32] = []
    private var held: [Int32] = []

    public init(mode: Mode) {
        self.mode = mode
    }

    public func add(listener fd: Int32) {
        // Non-blocking, so draining the accept queue stops when it is empty.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        listeners.append(fd)
    }

    /// Runs until `stop()` returns true (checked at least every 100 ms).
    public func run(until stop: () -> Bool) {
        var scratch = [UInt8](repeating: 0, count: 4096)
        while !stop() {
            var fds: [pollfd] = []
            if mode != .none { fds += listeners.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) } }
            fds += clients.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if fds.isEmpty {
                usleep(100_000)
                continue
            }
            let n = poll(&fds, nfds_t(fds.count), 100)
            if n <= 0 { continue }
            var closed: Set<Int32> = []
            for p in fds where p.revents != 0 {
                if listeners.contains(p.fd) {
                    while true {
                        let client = accept(p.fd, nil, nil)
                        if client < 0 { break }
                        _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                        if mode == .close { clients.append(client) } else { held.append(client) }
                        if clients.count + held.count > 16_000 { break }
                    }
                } else {
                    let got = read(p.fd, &scratch, scratch.count)
                    if got <= 0 {
                        close(p.fd)
                        closed.insert(p.fd)
                    }
                }
            }
            if !closed.isEmpty { clients.removeAll { closed.contains($0) } }
        }
    }
}
