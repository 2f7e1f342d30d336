import Glibc

/// Walks one benchmark mode's command line: the mode switches on each flag
/// `next()` returns and takes its value with `value()`; a missing value, an
/// unknown flag and `--help` are answered the same way in every mode.
struct BenchArguments {
    private let arguments: [String]
    private let usage: String
    private var index = -1

    init(_ arguments: [String], usage: String) {
        self.arguments = arguments
        self.usage = usage
    }

    /// The next flag, or nil when none is left.
    mutating func next() -> String? {
        index += 1
        return index < arguments.count ? arguments[index] : nil
    }

    /// The value after the current flag.
    mutating func value() throws -> String {
        index += 1
        guard index < arguments.count else { throw BenchError("\(arguments[index - 1]) needs a value\n" + usage) }
        return arguments[index]
    }

    /// The error for the current flag when the mode does not know it.
    var unknown: BenchError { BenchError("unknown argument \(arguments[index])\n" + usage) }

    /// `-h`, `--help`: the usage on stdout, and exit 0.
    func help() -> Never {
        writeAll(1, usage + "\n")
        exit(0)
    }
}
