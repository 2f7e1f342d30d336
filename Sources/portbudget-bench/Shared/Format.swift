import Glibc

func median(_ values: [Double]) -> Double? {
    guard !values.isEmpty else { return nil }
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// How the reports print numbers: milliseconds, MB, ratios, thousands separators.
enum Format {
    static func ms(_ s: Double?) -> String { s.map { fixed($0 * 1000, $0 < 0.1 ? 1 : 0) } ?? "–" }
    static func mib(_ m: Double?) -> String { m.map { fixed($0, 1) } ?? "–" }
    static func ratio(_ a: Double?, _ b: Double?) -> String {
        guard let a, let b, b > 0 else { return "–" }
        return fixed(a / b, 2)
    }
    static func fixed(_ x: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let r = (x * scale).rounded() / scale
        var text = "\(r)"
        if digits == 0 { return text.hasSuffix(".0") ? String(text.dropLast(2)) : text }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 2 && parts[1].count < digits { text += String(repeating: "0", count: digits - parts[1].count) }
        if parts.count == 1 { text += "." + String(repeating: "0", count: digits) }
        return text
    }
    static func thousands(_ n: Int) -> String {
        let s = String(n)
        var out = ""
        for (i, c) in s.enumerated() {
            if i > 0 && (s.count - i) % 3 == 0 { out += "," }
            out.append(c)
        }
        return out
    }
}
