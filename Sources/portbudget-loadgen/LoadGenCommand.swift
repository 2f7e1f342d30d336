import ArgumentParser
import Glibc
import PortBudgetLoad
import PortBudgetSockets

/// Builds real socket populations for portbudget's tests and benchmark.
/// Each command prints one JSON line {"made":N,"error":…}; with --hold it
/// then keeps its sockets until standard input closes.
@main
struct LoadGenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portbudget-loadgen",
        abstract: "Make real sockets: listeners, connections, TIME_WAIT churn, UDP, bound-only ports.",
        subcommands: [Listen.self, Connect.self, Churn.self, UDP.self, Bind.self, Tenants.self])
}

/// `HOST:PORT` or `HOST:LOW-HIGH` (one destination per port).
func expand(_ specs: [String]) throws -> [SocketAddress] {
    var out: [SocketAddress] = []
    for spec in specs {
        if let dash = spec.lastIndex(of: "-"), let colon = spec[..<dash].lastIndex(of: ":"),
           let low = UInt16(spec[spec.index(after: colon)..<dash]), let high = UInt16(spec[spec.index(after: dash)...]),
           low <= high, let base = SocketAddress(String(spec[..<colon]) + ":0") {
            out += (low...high).map { base.with(port: $0) }
        } else if let address = SocketAddress(spec) {
            out.append(address)
        } else {
            throw ValidationError("not an address: \(spec) (use 1.2.3.4:80, [::1]:80 or 1.2.3.4:80-90)")
        }
    }
    return out
}

struct Common: ParsableArguments {
    @Option(help: "Sockets to make (per destination where there are several).")
    var count = 1

    @Flag(help: "Stop at the first failure and report it instead of exiting 1.")
    var untilFail = false

    @Flag(help: "Keep the sockets open until standard input closes.")
    var hold = false

    func finish(_ result: LoadResult, sockets: [Int32]) throws {
        result.emit()
        if hold { waitForStdinEOF() }
        for fd in sockets { close(fd) }
        if result.failure != nil && !untilFail { throw ExitCode(1) }
    }
}

/// Runs `make` up to `count` times per target, stopping at the first failure.
func produce<T>(_ targets: [T], count: Int, _ make: (T) throws -> Int32) -> (LoadResult, [Int32]) {
    var result = LoadResult()
    var sockets: [Int32] = []
    outer: for target in targets {
        for _ in 0..<count {
            do {
                sockets.append(try make(target))
                result.made += 1
            } catch let failure as SocketFailure {
                result.failure = failure
                break outer
            } catch {
                break outer
            }
        }
    }
    return (result, sockets)
}

extension LoadGenCommand {
    struct Listen: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Listen and serve until standard input closes.")

        @Option(help: "Address to listen on; repeat, or give a port range HOST:LOW-HIGH.")
        var at: [String]

        @Option(help: "none: never accept (connections wait in the queue); hold: accept and keep; close: close after the client does.")
        var accept: AcceptLoop.Mode = .none

        @Option(help: "listen() backlog (raise net.core.somaxconn to match).")
        var backlog: Int32 = 65535

        func run() throws {
            SocketFactory.raiseDescriptorLimit()
            let loop = AcceptLoop(mode: accept)
            var result = LoadResult()
            for address in try expand(at) {
                do {
                    loop.add(listener: try SocketFactory.listen(at: address, backlog: backlog))
                    result.made += 1
                } catch let failure as SocketFailure {
                    result.failure = failure
                    result.emit()
                    throw ExitCode(1)
                }
            }
            result.emit()
            loop.run(until: stdinClosed)
        }
    }

    struct Connect: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Open TCP connections.")

        @Option(help: "Destination; repeat, or HOST:LOW-HIGH for one destination per port.")
        var to: [String]

        @Option(help: "Bind this source first: HOST:0 is bind-before-connect, HOST:PORT an explicit port.")
        var bind: String?

        @Option(help: "Source addresses to spread over, one after another per destination (HOST:0 each).")
        var from: [String] = []

        @Flag(help: "Set SO_REUSEADDR before binding.")
        var reuseaddr = false

        @Flag(help: "Close each connection right after it is made (TIME_WAIT churn).")
        var churn = false

        @OptionGroup var common: Common

        func run() throws {
            SocketFactory.raiseDescriptorLimit()
            let destinations = try expand(to)
            let source = try bind.map { spec -> SocketAddress in
                guard let s = SocketAddress(spec) else { throw ValidationError("not an address: \(spec)") }
                return s
            }
            let sources = try expand(from)
            let pairs: [(SocketAddress, SocketAddress?)] = sources.isEmpty
                ? destinations.map { ($0, source) }
                : destinations.flatMap { d in sources.map { (d, Optional($0)) } }
            var (result, sockets) = produce(pairs, count: common.count) { destination, from in
                try SocketFactory.connectTCP(to: destination, from: from, reuseAddress: reuseaddr)
            }
            if churn {
                for fd in sockets { SocketFactory.closeGracefully(fd) }
                sockets = []
                usleep(300_000)  // let the servers close their ends so ours reach TIME_WAIT
            }
            try common.finish(result, sockets: sockets)
        }
    }

    struct Churn: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Connect and close at once, leaving TIME_WAIT behind (servers in --accept close mode).")

        @Option(help: "Destination; repeat, or HOST:LOW-HIGH.")
        var to: [String]

        @Option(help: "Connections per destination.")
        var count = 1

        @Option(help: "Connections open at once before closing them.")
        var batch = 1000

        func run() throws {
            SocketFactory.raiseDescriptorLimit()
            var result = LoadResult()
            var open: [Int32] = []
            for destination in try expand(to) {
                for _ in 0..<count {
                    do {
                        open.append(try SocketFactory.connectTCP(to: destination))
                        result.made += 1
                    } catch let failure as SocketFailure {
                        result.failure = failure
                        break
                    }
                    if open.count >= batch {
                        open.forEach(SocketFactory.closeGracefully)
                        open = []
                    }
                }
                if result.failure != nil { break }
            }
            open.forEach(SocketFactory.closeGracefully)
            usleep(300_000)
            result.emit()
            if result.failure != nil { throw ExitCode(1) }
        }
    }

    struct UDP: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Open UDP sockets: connected (autobind) or bound.")

        @Option(help: "connect() each socket here (autobinds a port).")
        var to: String?

        @Option(help: "bind() each socket here (port 0 autobinds).")
        var bind: String?

        @Flag(help: "Send one datagram on each connected socket, so a NAT or conntrack on the path sees the flow.")
        var send = false

        @OptionGroup var common: Common

        func run() throws {
            SocketFactory.raiseDescriptorLimit()
            let destination = try to.map { try address($0) }
            let source = try bind.map { try address($0) }
            guard let family = (destination ?? source)?.family else {
                throw ValidationError("give --to, --bind, or both")
            }
            let (result, sockets) = produce([()], count: common.count) { _ in
                let fd = try SocketFactory.udp(family: family, bindTo: source, connectTo: destination)
                if send && destination != nil {
                    var byte: UInt8 = 0x70
                    guard Glibc.send(fd, &byte, 1, 0) == 1 else {
                        let e = errno
                        close(fd)
                        throw SocketFailure(call: "send", errno: e)
                    }
                }
                return fd
            }
            try common.finish(result, sockets: sockets)
        }
    }

    struct Bind: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "bind() TCP sockets and neither listen nor connect.")

        @Option(help: "Address to bind; port 0 autobinds.")
        var at: String

        @Flag(help: "Set SO_REUSEADDR before binding.")
        var reuseaddr = false

        @OptionGroup var common: Common

        func run() throws {
            SocketFactory.raiseDescriptorLimit()
            let target = try address(at)
            let (result, sockets) = produce([target], count: common.count) {
                try SocketFactory.bound(at: $0, reuseAddress: reuseaddr)
            }
            try common.finish(result, sockets: sockets)
        }
    }
}

extension LoadGenCommand {
    struct Tenants: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Flood the host with user + network namespaces, each with its range drained (run as an unprivileged user).",
            discussion: """
                Each namespace is a user namespace of the caller's uid with a network namespace inside, held by a
                forked process: loopback up, ip_local_port_range set, a listener on port 9000 and one connection per
                port of the range to each destination (127.0.0.1, 127.0.0.2, …). Prints {"made":N,…} once every
                namespace is made, then keeps them (replacing the oldest --churn times a second) until standard
                input closes; every namespace ends with this process.
                """)

        @Option(help: "Namespaces to make.")
        var namespaces: Int

        @Option(help: "Each namespace's ephemeral range, LOW-HIGH.")
        var range = "40000-40001"

        @Option(help: "Destinations of the namespaces that have several.")
        var destinations = 300

        @Option(help: "One namespace in this many has --destinations destinations, the others one (0: none).")
        var severalEvery = 0

        @Option(help: "Namespaces destroyed and made anew per second, oldest first.")
        var churn = 0.0

        func run() throws {
            let bounds = range.split(separator: "-").compactMap { UInt16($0) }
            guard bounds.count == 2, bounds[0] <= bounds[1] else { throw ValidationError("--range takes LOW-HIGH") }
            let tenant = TenantNamespaces(plan: .init(namespaces: namespaces, range: (bounds[0], bounds[1]),
                                                      destinations: destinations, severalEvery: severalEvery,
                                                      churnPerSecond: churn))
            var result = LoadResult()
            result.failure = tenant.makeAll()
            result.made = tenant.alive
            result.emit()
            guard result.failure == nil else {
                tenant.endAll()
                throw ExitCode(1)
            }
            tenant.run(until: stdinClosed)
            var line = Array("{\"replaced\":\(tenant.replaced)}\n".utf8)
            _ = write(1, &line, line.count)
        }
    }
}

func address(_ spec: String) throws -> SocketAddress {
    guard let a = SocketAddress(spec) else { throw ValidationError("not an address: \(spec)") }
    return a
}

extension AcceptLoop.Mode: ExpressibleByArgument {}
