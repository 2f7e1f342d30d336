import Glibc

/// `portbudget-bench namespaces-floor`, driven over its stdin.
final class FloorProcess {
    struct Dump {
        struct Entry { var name: String; var tcp: Int; var messages: Int; var seconds: Double }
        var perNamespace: [Entry] = []
        var seconds: Double = 0
        var cpu: Double = 0
        var messages: Int = 0
    }

    let child: Child

    init(bench: String) throws {
        child = try Child.spawn([bench, "namespaces-floor"], stdinPipe: true, stdout: .pipe)
    }

    private func ask(_ line: String) throws -> String {
        writeAll(child.stdinWrite, line + "\n")
        guard let answer = child.readLine(timeout: 120) else { throw BenchError("the floor process did not answer `\(line)`") }
        return answer
    }

    func add(_ name: String, path: String) throws {
        let answer = try ask("add \(name) \(path)")
        guard answer == "ok \(name)" else { throw BenchError("floor: \(answer)") }
    }

    func replace(_ gone: String, with name: String, path: String) throws {
        _ = try ask("del \(gone)")
        try add(name, path: path)
    }

    func dump() throws -> Dump {
        writeAll(child.stdinWrite, "dump\n")
        var dump = Dump()
        while true {
            guard let line = child.readLine(timeout: 300) else { throw BenchError("the floor process stopped answering") }
            func field(_ key: String) -> Substring? {
                guard let r = line.firstRange(of: " " + key + "=") else { return nil }
                return line[r.upperBound...].prefix { $0 != " " }
            }
            if line.hasPrefix("ns ") {
                let name = String(line.dropFirst(3).prefix { $0 != " " })
                dump.perNamespace.append(.init(name: name, tcp: Int(field("tcp") ?? "") ?? 0,
                                               messages: Int(field("messages") ?? "") ?? 0,
                                               seconds: Double(field("seconds") ?? "") ?? 0))
            } else if line.hasPrefix("dump ") {
                dump.seconds = Double(field("seconds") ?? "") ?? 0
                dump.cpu = Double(field("cpu") ?? "") ?? 0
                dump.messages = Int(field("messages") ?? "") ?? 0
                return dump
            } else {
                throw BenchError("floor: \(line)")
            }
        }
    }

    /// Seconds of each TCP table walk alone, per namespace.
    func walks() throws -> [String: [TCPWalk: Double]] {
        writeAll(child.stdinWrite, "walks\n")
        var walks: [String: [TCPWalk: Double]] = [:]
        while true {
            guard let line = child.readLine(timeout: 300) else { throw BenchError("the floor process stopped answering") }
            if line == "walked" { return walks }
            let words = line.split(separator: " ")
            guard words.count == 2 + TCPWalk.allCases.count, words[0] == "walks" else { throw BenchError("floor: \(line)") }
            var row: [TCPWalk: Double] = [:]
            for word in words.dropFirst(2) {
                let pair = word.split(separator: "=")
                guard pair.count == 2, let walk = TCPWalk(rawValue: String(pair[0])), let seconds = Double(pair[1]) else {
                    throw BenchError("floor: \(line)")
                }
                row[walk] = seconds
            }
            walks[String(words[1])] = row
        }
    }

    /// Every member namespace must show exactly its listener and both ends of each connection.
    func check(members: [String], tcpEach: Int) throws {
        let dump = try dump()
        for name in members {
            guard let entry = dump.perNamespace.first(where: { $0.name == name }), entry.tcp == tcpEach else {
                throw BenchError("the floor sees \(dump.perNamespace.first { $0.name == name }?.tcp ?? -1) TCP sockets in \(name), built \(tcpEach)")
            }
        }
    }

    func stop() {
        child.finish(timeout: 5)
    }
}
