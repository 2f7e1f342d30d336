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

    /// The value after the current flag as a number of at least `min`
    /// ("_" and "," may group digits).
    mutating func number(min: Double) throws -> Double {
        let flag = arguments[index]
        guard let n = Double(try value().filter { $0 != "_" && $0 != "," }), n >= min else {
            throw BenchError("\(flag) takes a number ≥ \(min == min.rounded() ? String(Int(min)) : String(min))")
        }
        return n
    }

    /// The same, as a whole number.
    mutating func count(min: Int) throws -> Int {
        let flag = arguments[index]
        let n = try number(min: Double(min))
        guard n == n.rounded(), let whole = Int(exactly: n) else { throw BenchError("\(flag) takes a whole number") }
        return whole
    }

    /// The error for the current flag when the mode does not know it.
    var unknown: BenchError { BenchError("unknown argument \(arguments[index])\n" + usage) }

    /// `-h`, `--help`: the usage on stdout, and exit 0.
    func help() -> Never {
        writeAll(1, usage + "\n")
        exit(0)
    }
}
