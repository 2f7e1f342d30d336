import Glibc

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func writeAll(_ fd: Int32, _ text: String) {
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 { if errno == EINTR { continue } else { return } }
            offset += n
        }
    }
}

func log(_ line: String) { writeAll(2, "bench: " + line + "\n") }

/// Every child the orchestrator started and has not reaped, so a signal or
/// an error can end them all. Touched from the signal handler, hence a plain
/// fixed array of pids (the namespaces benchmark holds two generators in
/// each of its 100 namespaces, and replaces some of them every round).
nonisolated(unsafe) var liveChildren = [pid_t](repeating: 0, count: 1024)

func track(_ pid: pid_t) {
    for i in liveChildren.indices where liveChildren[i] == 0 { liveChildren[i] = pid; return }
}

func untrack(_ pid: pid_t) {
    for i in liveChildren.indices where liveChildren[i] == pid { liveChildren[i] = 0 }
}

/// SIGTERMs every live child (async-signal-safe: kill only).
func terminateChildren() {
    for pid in liveChildren where pid > 0 { kill(pid, SIGTERM) }
}

/// What wait4 says about a finished child.
struct Usage {
    var wall: Double
    var cpu: Double
    var user: Double
    /// Peak resident set, KiB.
    var maxRSSKiB: Int
    var status: Int32
}

/// A started child. `stdinWrite` is our end of its stdin (closing it tells a
/// `--hold` generator to let go); `stdoutRead` our end of its stdout, when piped.
final class Child {
    let pid: pid_t
    let started: Double
    var stdinWrite: Int32
    var stdoutRead: Int32
    private var pending: [UInt8] = []
    private(set) var reaped = false

    init(pid: pid_t, started: Double, stdinWrite: Int32, stdoutRead: Int32) {
        self.pid = pid
        self.started = started
        self.stdinWrite = stdinWrite
        self.stdoutRead = stdoutRead
    }

    enum Output { case null, pipe, file(String) }

    /// posix_spawnp with stdin from a pipe (or /dev/null) and stdout to
    /// /dev/null, a pipe or a file; stderr goes to ours, to /dev/null, or to a file.
    static func spawn(_ argv: [String], stdinPipe: Bool = false, stdout: Output = .null,
                      quietStderr: Bool = false, stderrFile: String? = nil) throws -> Child {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var inPipe: [Int32] = [-1, -1], outPipe: [Int32] = [-1, -1]
        if stdinPipe {
            guard cloexecPipe(&inPipe) else { throw BenchError("pipe2: errno \(errno)") }
            posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        switch stdout {
        case .null: posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        case .pipe:
            guard cloexecPipe(&outPipe) else { throw BenchError("pipe2: errno \(errno)") }
            posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        case let .file(path): posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        }
        if quietStderr { posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0) }
        if let stderrFile { posix_spawn_file_actions_addopen(&actions, 2, stderrFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644) }
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var pid: pid_t = 0
        let started = monotonicSeconds()
        let rc = posix_spawnp(&pid, argv[0], &actions, nil, cArgs, environ)
        if stdinPipe { close(inPipe[0]) }
        if case .pipe = stdout { close(outPipe[1]) }
        guard rc == 0 else {
            if stdinPipe { close(inPipe[1]) }
            if case .pipe = stdout { close(outPipe[0]) }
            throw BenchError("cannot start \(argv[0]): errno \(rc)")
        }
        track(pid)
        return Child(pid: pid, started: started, stdinWrite: inPipe[1], stdoutRead: outPipe[0])
    }

    /// Runs `argv` to completion and returns its usage.
    static func run(_ argv: [String], stdout: Output = .null, quietStderr: Bool = false) throws -> Usage {
        try spawn(argv, stdout: stdout, quietStderr: quietStderr).wait()
    }

    /// Reads one line from the child's stdout, waiting at most `timeout` seconds.
    func readLine(timeout: Double) -> String? {
        let deadline = monotonicSeconds() + timeout
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let line = pending.takeLine() { return line }
            let left = deadline - monotonicSeconds()
            if left <= 0 { return nil }
            var p = pollfd(fd: stdoutRead, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, Int32(min(left, 1) * 1000) + 1) <= 0 { continue }
            let n = read(stdoutRead, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            pending += chunk[0..<n]
        }
    }

    /// Reads stdout to EOF.
    func readAll() -> String {
        var out = pending
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(stdoutRead, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += chunk[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Closes our end of its stdin: a `--hold` generator then exits.
    func release() {
        if stdinWrite >= 0 { close(stdinWrite); stdinWrite = -1 }
    }

    /// Lets a `--hold` child go: closes its stdin, waits up to `timeout`
    /// seconds for it to leave, then kills it; reaps it and closes our pipes.
    func finish(timeout: Double = 10) {
        release()
        guard !reaped else { return }
        let deadline = monotonicSeconds() + timeout
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            if monotonicSeconds() >= deadline { kill(pid, SIGKILL); waitpid(pid, &status, 0); break }
            usleep(5_000)
        }
        reaped = true
        untrack(pid)
        if stdoutRead >= 0 { close(stdoutRead); stdoutRead = -1 }
    }

    func terminate() {
        release()
        if !reaped { kill(pid, SIGTERM) }
    }

    @discardableResult
    func wait() throws -> Usage {
        var status: Int32 = 0
        var usage = rusage()
        var rc: pid_t
        repeat { rc = wait4(pid, &status, 0, &usage) } while rc < 0 && errno == EINTR
        let wall = monotonicSeconds() - started
        reaped = true
        untrack(pid)
        if stdoutRead >= 0 { close(stdoutRead); stdoutRead = -1 }
        release()
        guard rc == pid else { throw BenchError("wait4(\(pid)): errno \(errno)") }
        let user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        let cpu = user + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Usage(wall: wall, cpu: cpu, user: user, maxRSSKiB: Int(usage.ru_maxrss), status: code)
    }

    /// Peak RSS so far of a running child (VmHWM), KiB.
    var peakRSSKiB: Int? { Self.statusField(pid, "VmHWM:") }
    var rssKiB: Int? { Self.statusField(pid, "VmRSS:") }
    /// The anonymous part of RSS (heap, stacks), and the file-backed part (code and libraries, page cache the kernel may drop).
    var rssAnonKiB: Int? { Self.statusField(pid, "RssAnon:") }
    var rssFileKiB: Int? { Self.statusField(pid, "RssFile:") }

    static func statusField(_ pid: pid_t, _ field: String) -> Int? {
        guard let text = readFile("/proc/\(pid)/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field) {
            return Int(line.dropFirst(field.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }
}

func readFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

func writeFile(_ path: String, _ text: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw BenchError("cannot write \(path): errno \(errno)") }
    writeAll(fd, text)
    close(fd)
}

/// pipe() with FD_CLOEXEC on both ends (pipe2 needs _GNU_SOURCE). This
/// process starts children from one thread only, so nothing can fork between.
func cloexecPipe(_ fds: inout [Int32]) -> Bool {
    guard pipe(&fds) == 0 else { return false }
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return true
}

extension Array<UInt8> {
    /// Removes and returns the first complete line (without its newline), if there is one.
    mutating func takeLine() -> String? {
        guard let newline = firstIndex(of: 10) else { return nil }
        defer { removeSubrange(...newline) }
        return String(decoding: self[..<newline], as: UTF8.self)
    }
}
