import Foundation
import XCTest

/// A long-running server started for an exporter test — `portbudget serve`,
/// Prometheus, node_exporter — optionally inside a test's network namespace
/// (`ip netns exec` execs the program, so the process is the server itself
/// and signals reach it). Killed at deinit if the test did not stop it.
final class ExporterProcess {
    let process = Process()
    let name: String
    private let stdout: Drain
    private let stderr: Drain

    init(_ arguments: [String], in ns: NetworkNamespace? = nil) throws {
        name = URL(fileURLWithPath: arguments[0]).lastPathComponent
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = (ns.map { ["ip", "netns", "exec", $0.name] } ?? []) + arguments
        let out = Pipe(), err = Pipe()
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        try process.run()
        stdout = Drain(out.fileHandleForReading)
        stderr = Drain(err.fileHandleForReading)
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    var stderrText: String { stderr.snapshot() }
    var stdoutText: String { stdout.snapshot() }

    /// Sends `signal` and waits up to `timeout` seconds for the exit.
    /// Returns the exit status and how long it took, or nil if it is still running.
    func stop(_ signal: Int32 = SIGTERM, timeout: TimeInterval = 5) -> (status: Int32, reason: Process.TerminationReason, seconds: Double)? {
        let started = Date()
        kill(process.processIdentifier, signal)
        while process.isRunning && Date().timeIntervalSince(started) < timeout { usleep(10_000) }
        guard !process.isRunning else { return nil }
        return (process.terminationStatus, process.terminationReason, Date().timeIntervalSince(started))
    }

    /// Polls `probe` every 200 ms until it returns a value or `timeout` passes;
    /// fails naming this server (with its stderr) if it never does.
    func await<T>(_ what: String, timeout: TimeInterval = 30, _ probe: () throws -> T?) throws -> T {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let value = try probe() { return value }
            guard process.isRunning else {
                throw Failure("\(name) exited \(process.terminationStatus) while waiting for \(what): \(stderrText)")
            }
            usleep(200_000)
        }
        throw Failure("\(name): no \(what) after \(Int(timeout)) s; stderr: \(stderrText.suffix(2000))")
    }

    /// A program the test needs. Missing locally, the test skips; under
    /// CI=true a missing program is a failure, since CI installs them.
    static func require(_ program: String, file: StaticString = #filePath, line: UInt = #line) throws {
        if FileManager.default.isExecutableFile(atPath: program) { return }
        let why = "\(program) is not installed (Debian packages prometheus, prometheus-node-exporter, curl)"
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            XCTFail("CI=true, so this cannot be skipped: \(why)", file: file, line: line)
            throw Failure(why)
        }
        throw XCTSkip(why)
    }
}
