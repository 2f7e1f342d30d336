import Foundation
import Logging
import PortBudgetCore
import PortBudgetLinux
import XCTest

/// With the failure programs watching a namespace, its census walks the
/// kernel's TCP tables once rather than twice: connected sockets bound
/// explicitly are known from an earlier census's labels, the programs'
/// cookies and the listeners' ports. Held to the kernel's own filter (a
/// census without the programs, which walks twice) through sockets of
/// every kind, and to the kernel's connect()s at the end.
extension BoundSocketIsolationKernelTests {
    /// argv: address. Listens on 9001 (outside the range) and accepts
    /// everything; each line on standard input is "explicit N" (clients that
    /// bind(address, PORT) then connect(), each PORT the highest free one
    /// below 40090), "plain N" (clients whose port connect() chooses),
    /// "bound N" (bind(address, 0) then connect()), "serve PORT N" (a
    /// listener on PORT, in the range, with N clients accepted) or
    /// "unlisten" (that listener closes, its accepted sockets stay). Prints
    /// "ok" after each.
    static let labelledClients = """
        import socket, sys, threading
        host = sys.argv[1]
        kept = []
        def listener(port, backlog):
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port)); s.listen(backlog); return s
        main = listener(9001, 4096)
        def accept():
            while True: kept.append(main.accept()[0])
        threading.Thread(target=accept, daemon=True).start()
        def client(port=None, bind=None):
            c = socket.socket()
            if bind is not None: c.bind((host, bind))
            c.connect((host, port or 9001)); kept.append(c)
        def explicit():
            for port in range(40089, 40000, -1):
                try: return client(bind=port)
                except OSError: pass
        print("ok", flush=True)
        for line in sys.stdin:
            words = line.split()
            if words[0] == "explicit":
                for _ in range(int(words[1])): explicit()
            elif words[0] == "plain":
                for _ in range(int(words[1])): client()
            elif words[0] == "bound":
                for _ in range(int(words[1])): client(bind=0)
            elif words[0] == "serve":
                inrange = listener(int(words[1]), 64)
                for _ in range(int(words[2])):
                    client(port=int(words[1])); kept.append(inrange.accept()[0])
            elif words[0] == "unlisten":
                inrange.close()
            print("ok", flush=True)
        """

    /// What the two ways of labelling must agree on.
    struct TCPView: Equatable, CustomStringConvertible {
        var groups: [String]
        var explicitBoundPorts: Int
        var explicitConnectedPorts: Int
        var autoConnections: Int
        var boundPorts: Int
        var listenerPorts: [Int]

        init(_ report: PortBudgetReport) {
            groups = report.tcp.groups.map { "\($0.peerIP):\($0.peerPort) used \($0.used)/\($0.capacity) tw \($0.timeWait)" }.sorted()
            explicitBoundPorts = report.tcp.explicitBoundPorts
            explicitConnectedPorts = report.tcp.explicitConnectedPorts
            autoConnections = report.tcp.autoConnections
            boundPorts = report.tcp.boundPorts
            listenerPorts = report.tcp.listenerPortsInRange
        }

        var description: String {
            "groups \(groups), explicit \(explicitBoundPorts), explicit connected \(explicitConnectedPorts), "
                + "auto \(autoConnections), bound \(boundPorts), listeners \(listenerPorts)"
        }
    }

    func testOneWalkFoldsWhatTheKernelsFilterFolds() throws {
        let ns = try NetworkNamespace(range: (40000, 40099))
        let helper = try HeldProcess(["ip", "netns", "exec", ns.name, "python3", "-c", Self.labelledClients, "127.0.0.1"])
        defer { helper.release() }
        XCTAssertEqual(helper.firstLine(timeout: 10), "ok", helper.stderrText())
        var answers = 1
        func send(_ line: String) throws {
            helper.send(line)
            answers += 1
            let deadline = Date().addingTimeInterval(30)
            while helper.stdoutText().split(separator: "\n").count < answers {
                guard Date() < deadline else { throw Failure("no answer to \"\(line)\": \(helper.stderrText())") }
                usleep(10_000)
            }
        }
        // Older than the programs: known only through the kernel's filter at first.
        try send("explicit 2")
        try send("serve 40090 3")
        try send("plain 5")

        let handle = try NetworkNamespaceHandle(.name(ns.name))
        let scope = CollectionSource.Scope.netns([(handle, ns.name)])
        let (source, tracker, _) = try source(scope)
        let filtered = CollectionSource(CollectionSource.Configuration(scope: scope, holders: nil), logger: Logger(label: "test"))
        func censuses(_ step: String, walkedOnce: Bool, asTheFilter: Bool = true,
                      file: StaticString = #filePath, line: UInt = #line) throws -> PortBudgetReport {
            let report = try XCTUnwrap(collect(source).namespaces.first?.report, step, file: file, line: line)
            XCTAssertEqual(tracker.walkedOnce(lastCensusOf: handle.inode), walkedOnce, step, file: file, line: line)
            if asTheFilter {
                let reference = try XCTUnwrap(collect(filtered).namespaces.first?.report, step, file: file, line: line)
                XCTAssertEqual(TCPView(report), TCPView(reference), step, file: file, line: line)
            }
            // Accepted sockets are never taken for connect()'s: no destination is a client's port.
            XCTAssertEqual(Set(report.tcp.groups.map(\.peerPort)), [9001, 40090], step, file: file, line: line)
            return report
        }

        _ = try censuses("the first census: the filter labels", walkedOnce: false)
        let again = try censuses("labelled: one walk", walkedOnce: true)
        XCTAssertEqual(again.tcp.explicitConnectedPorts, 2)
        XCTAssertEqual(again.tcp.groups.first { $0.peerPort == 9001 }?.capacity, 97, "two explicit and the listener's 40090")

        try send("explicit 1")
        try send("plain 2")
        let newer = try censuses("explicit and plain clients made while watched", walkedOnce: true)
        XCTAssertEqual(newer.tcp.explicitConnectedPorts, 3)

        // The listener closes; its accepted sockets keep its port from
        // connect(), which neither they nor the filter show. The census
        // knows them from when the listener was there.
        try send("unlisten")
        let orphaned = try censuses("accepted sockets outliving their listener", walkedOnce: true, asTheFilter: false)
        XCTAssertEqual(orphaned.tcp.listenerPortsInRange, [])
        XCTAssertEqual(orphaned.tcp.explicitConnectedPorts, 4, "three explicit, and 40090 the accepted sockets hold")
        XCTAssertEqual(orphaned.tcp.groups.first { $0.peerPort == 9001 }?.capacity, 96)
        let unaware = try XCTUnwrap(collect(filtered).namespaces.first?.report)
        XCTAssertEqual(unaware.tcp.groups.first { $0.peerPort == 9001 }?.capacity, 97,
                       "without a census from the listener's time, the port looks connect()'s")

        // bind(addr, 0) looks connect()-chosen to the filter; the programs know it.
        try send("bound 2")
        let report = try XCTUnwrap(collect(source).namespaces.first?.report)
        XCTAssertEqual(tracker.walkedOnce(lastCensusOf: handle.inode), true)
        XCTAssertEqual(report.tcp.bindTracking?.boundBeforeConnectPorts, 3, "the 2, and the explicit client made while watched")
        let destination = try XCTUnwrap(report.tcp.groups.first { $0.peerPort == 9001 })
        // 100 − three explicit − 40090 (its listener gone) − the 2 bound = 94
        // for every destination; 7 plain clients use 7.
        XCTAssertEqual(destination.capacity, 94)
        XCTAssertEqual(destination.used, 7)
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:9001"), LoadOutcome(made: destination.free, error: "EADDRNOTAVAIL"),
                       "the kernel accepts as many more connect()s as the single walk said")
    }
}
