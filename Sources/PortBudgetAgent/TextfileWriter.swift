#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes `DIR/portbudget.prom` for node_exporter's textfile collector so that
/// a reader only ever sees a whole file: the text goes to a temporary file in
/// the same directory (so rename stays on one filesystem), is fsynced, then
/// renamed over the old one. The temporary name starts with a dot and does
/// not end in `.prom`, so the collector, which reads only `*.prom`, never
/// picks up a half-written file, even if the agent is killed mid-write.
public struct TextfileWriter: Sendable {
    public static let fileName = "portbudget.prom"
    /// One fixed name: a killed writer leaves at most this one file behind,
    /// and the next write reuses it.
    public static let temporaryName = ".portbudget.prom.tmp"

    public let directory: String

    public init(directory: String) {
        self.directory = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
    }

    public var path: String { directory + "/" + Self.fileName }
    public var temporaryPath: String { directory + "/" + Self.temporaryName }

    /// Fails unless DIR is a directory this process can create files in;
    /// checked by creating and removing the temporary file, which is what
    /// every write does.
    public func checkWritable() throws(TextfileError) {
        var info = stat()
        guard stat(directory, &info) == 0 else { throw TextfileError(directory, errno) }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw TextfileError("\(directory) is not a directory") }
        let fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw TextfileError(directory, errno) }
        close(fd)
        unlink(temporaryPath)
    }

    /// Replaces DIR/portbudget.prom with `text` atomically.
    public func write(_ text: String) throws(TextfileError) {
        let fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw TextfileError(temporaryPath, errno) }
        func abandon(_ code: Int32) -> TextfileError {
            close(fd)
            unlink(temporaryPath)
            return TextfileError(temporaryPath, code)
        }
        // Readable by node_exporter's user whatever the umask; metrics are not secret.
        guard fchmod(fd, 0o644) == 0 else { throw abandon(errno) }
        let failed = writeAll(fd, text)
        guard failed == 0 else { throw abandon(failed) }
        guard fsync(fd) == 0 else { throw abandon(errno) }
        guard close(fd) == 0 else {
            let code = errno
            unlink(temporaryPath)
            throw TextfileError(temporaryPath, code)
        }
        guard rename(temporaryPath, path) == 0 else {
            let e = errno
            unlink(temporaryPath)
            throw TextfileError(path, e)
        }
        // Make the rename itself durable; a failure here leaves a whole file either way.
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            _ = fsync(dir)
            close(dir)
        }
    }

    /// Writes every byte; returns 0 or the errno that stopped it.
    private func writeAll(_ fd: Int32, _ text: String) -> Int32 {
        var text = text
        return text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                offset += n
            }
            return 0
        }
    }
}

/// DIR or the file could not be written; one line naming the path.
public struct TextfileError: Error, CustomStringConvertible {
    public let description: String

    init(_ description: String) { self.description = description }

    init(_ path: String, _ code: Int32) {
        description = "cannot write \(path): \(String(cString: strerror(code)))"
    }
}
