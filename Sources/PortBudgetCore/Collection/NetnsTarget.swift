/// The namespace `check --netns` measures, as the operator names it:
/// `pid:PID` (the namespace that process is in), a path to a namespace
/// file (anything with a "/"), or a name made by `ip netns add` (then
/// `/run/netns/NAME`, else Docker's `/var/run/docker/netns/NAME`).
public enum NetnsTarget: Sendable, Equatable {
    case pid(Int32)
    case path(String)
    case name(String)

    public init(parsing text: String) throws {
        if text.hasPrefix("pid:") {
            guard let pid = Int32(text.dropFirst(4)), pid > 0 else {
                throw NetnsTargetError("--netns \(text): pid:PID takes a process id above 0")
            }
            self = .pid(pid)
        } else if text.contains("/") {
            self = .path(text)
        } else {
            guard !text.isEmpty, text != ".", text != ".." else { throw NetnsTargetError("--netns needs a name, a path or pid:PID") }
            self = .name(text)
        }
    }

    /// The files to try, in order.
    public func candidates(procfs: String = "/proc") -> [String] {
        switch self {
        case let .pid(pid): return ["\(procfs)/\(pid)/ns/net"]
        case let .path(path): return [path]
        case let .name(name): return ["/run/netns/\(name)", "/var/run/docker/netns/\(name)"]
        }
    }
}

public struct NetnsTargetError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
