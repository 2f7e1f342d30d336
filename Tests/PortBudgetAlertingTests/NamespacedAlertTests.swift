import XCTest
@testable import PortBudgetCore

/// `--all-namespaces`: one evaluation over every namespace, each alert under
/// its namespace's `netns` label, and one namespace's state untouched by
/// another's evaluation or by its own failed census.
final class NamespacedAlertTests: XCTestCase {
    /// One destination group, `used` of 100 ports.
    func report(used: Int) -> PortBudgetReport {
        var census = PortCensus(sysctls: PortSysctls(rangeLow: 40000, rangeHigh: 40099))
        for i in 0..<used {
            census.addTCP(InetDiagRecord(family: .v4, state: TCPState.established, localPort: UInt16(40000 + i),
                                         remotePort: 80, local: IPAddress("10.0.0.1")!, remote: IPAddress("10.0.0.2")!),
                          explicitlyBound: false)
        }
        return census.report(thresholds: Thresholds())
    }

    let rule = AlertRule(name: "Exhausted", quantity: .tcpGroupUtilization, comparison: .above(0.9), forSeconds: 0,
                         severity: "critical", labels: [:],
                         annotations: ["summary": try! AlertTemplate("{{ $labels.peer_port }} nearly out{{ $netns }}.")])

    func inputs(_ used: Int, netns: String) -> AlertInputs {
        AlertInputs(report: report(used: used), icmpUnreachablePerSecond: nil, projections: [],
                    labels: ["netns": netns])
    }

    func testSameGroupInTwoNamespacesIsTwoAlertsNamingTheirNamespace() {
        var machine = AlertStateMachine(rules: [rule], evaluationInterval: 10)
        machine.evaluate([inputs(95, netns: "pod:web-1"), inputs(99, netns: "host")], at: 1000)
        let active = machine.active.sorted { $0.labels["netns"]! < $1.labels["netns"]! }
        XCTAssertEqual(active.map { $0.labels["netns"] }, ["host", "pod:web-1"])
        XCTAssertEqual(active.map { $0.annotations["summary"] }, ["80 nearly out in netns host.", "80 nearly out in netns pod:web-1."])
        XCTAssertEqual(Set(active.map { $0.labels["peer_port"] }), ["80"])
    }

    func testUnmeasuredNamespaceKeepsItsAlertsAndAGoneOneResolves() {
        var machine = AlertStateMachine(rules: [rule], evaluationInterval: 10)
        machine.evaluate([inputs(95, netns: "a"), inputs(95, netns: "b")], at: 1000)
        XCTAssertEqual(machine.active.filter { $0.state == .firing }.count, 2)
        // "a" could not be measured this time: its alert stays firing; "b" is gone: resolved.
        machine.evaluate([], unmeasured: ["a"], at: 1010)
        let states = Dictionary(uniqueKeysWithValues: machine.alerts.values.map { ($0.labels["netns"]!, $0.state) })
        XCTAssertEqual(states, ["a": .firing, "b": .resolved])
    }

    func testSingleNamespaceTemplatesRenderNoNamespace() throws {
        XCTAssertEqual(try AlertTemplate("low{{ $netns }}.").render(labels: [:], value: 1), "low.")
        XCTAssertEqual(try AlertTemplate("low{{ $netns }}.").render(labels: ["netns": "x"], value: 1), "low in netns x.")
    }
}
