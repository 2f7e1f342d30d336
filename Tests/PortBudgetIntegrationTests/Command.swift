import Foundation

/// Runs a program to completion with a time limit, capturing its output.
enum Command {
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ arguments: [String], timeout: TimeInterval = 60) -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch {
            return Output(status: 127, stdout: "", stderr: "cannot start \(arguments[0]): \(error)")
        }
        // Drain both pipes while it runs, so a chatty child never blocks on a full pipe.
        let stdoutData = Drain(out.fileHandleForReading)
        let stderrData = Drain(err.fileHandleForReading)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            return Output(status: 124, stdout: stdoutData.text(), stderr: "timed out after \(timeout)s: " + stderrData.text())
        }
        process.waitUntilExit()
        return Output(status: process.terminationStatus, stdout: stdoutData.text(), stderr: stderrData.text())
    }
}

/// Reads a pipe to EOF on a background thread.
final class Drain: @unchecked Sendable {
    private var data = Data()
    private let lock = NSLock()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                lock.lock(); data.append(chunk); lock.unlock()
            }
            done.signal()
        }
    }

    func text() -> String {
        done.wait()
        lock.lock(); defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }

    func snapshot() -> String {
        lock.lock(); defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}

/// A long-running child whose standard input the test holds: closing it
/// tells a generator to release its sockets and exit.
final class HeldProcess {
    let process = Process()
    private let input = Pipe()
    private let stdout: Drain
    private let stderr: Drain

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardInput = input
        process.standardOutput = out
        process.standardError = err
        try process.run()
        stdout = Drain(out.fileHandleForReading)
        stderr = Drain(err.fileHandleForReading)
    }

    /// The first line the child prints, waiting up to `timeout` seconds.
    func firstLine(timeout: TimeInterval) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let text = stdout.snapshot()
            if let newline = text.firstIndex(of: "\n") { return String(text[..<newline]) }
            if !process.isRunning && stdout.snapshot().isEmpty { return nil }
            usleep(2_000)
        }
        return nil
    }

    func stderrText() -> String { stderr.snapshot() }

    /// Writes one line to the child's standard input.
    func send(_ line: String) {
        try? input.fileHandleForWriting.write(contentsOf: Data((line + "\n").utf8))
    }

    /// Everything the child printed on standard output so far.
    func stdoutText() -> String { stdout.snapshot() }

    func release() {
        try? input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}
