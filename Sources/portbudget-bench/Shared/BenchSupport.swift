import Glibc

/// The directory this executable is in, where `swift build` put the
/// agent and the load generator beside it.
func executableDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    let path = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "./x"
    return String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
}

func machineDescription() -> String {
    var u = utsname()
    uname(&u)
    let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    let cpu = (readFile("/proc/cpuinfo") ?? "").split(separator: "\n")
        .first { $0.hasPrefix("model name") }.flatMap { $0.split(separator: ":").last }
        .map { $0.trimmingPrefix(" ") } ?? "unknown CPU"
    let memKiB = (readFile("/proc/meminfo") ?? "").split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
        .flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Int($0) } ?? 0
    return "\(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs (\(cpu)), \(memKiB / 1024 / 1024) GiB, Linux \(release)"
}

func utcDate() -> String {
    var t = time(nil)
    var tmv = tm()
    gmtime_r(&t, &tmv)
    var buffer = [CChar](repeating: 0, count: 64)
    let n = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M UTC", &tmv)
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Replaces the generated part of `path` (between the markers), or appends it.
func updateDoc(_ path: String, _ body: String, marker: String = "portbudget-bench") throws {
    let begin = "<!-- \(marker):begin -->", end = "<!-- \(marker):end -->"
    let block = begin + "\n" + body + end
    let old = readFile(path) ?? ""
    if let b = old.firstRange(of: begin), let e = old.firstRange(of: end), b.lowerBound < e.lowerBound {
        try writeFile(path, String(old[..<b.lowerBound]) + block + String(old[e.upperBound...]))
    } else {
        try writeFile(path, old + (old.isEmpty ? "" : "\n") + block + "\n")
    }
}

func installSignalHandlers() {
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal(sig) { _ in
            terminateChildren()
            NetnsRegistry.deleteAll()
            Namespace.delete()
            _exit(130)
        }
    }
    signal(SIGPIPE, SIG_IGN)
}
