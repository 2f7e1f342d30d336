// Writes the Swift source that holds the agent's version, from the VERSION file
// at the repository root plus an optional suffix (scripts/package adds one for a
// dirty tree). Run by the VersionConstant build-tool plugin, never by hand.
// Usage: GenerateVersionConstant VERSION-FILE OUTPUT.swift [SUFFIX]
import Foundation

/// Release versions are MAJOR.MINOR.PATCH, so that the same string is a valid
/// Debian version, an OCI tag and a semantic version.
let releasePattern = #/^[0-9]+\.[0-9]+\.[0-9]+$/#
/// A suffix may hold only what both a Debian version and an OCI tag accept, so
/// the one string serves as both: dot-separated letters and digits.
let suffixPattern = #/^(\.[A-Za-z0-9]+)*$/#

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("GenerateVersionConstant: \(message)\n".utf8))
    exit(1)
}

let arguments = CommandLine.arguments.dropFirst()
guard arguments.count == 2 || arguments.count == 3 else {
    fail("usage: GenerateVersionConstant VERSION-FILE OUTPUT.swift [SUFFIX]")
}
let versionPath = arguments[arguments.startIndex]
let outputPath = arguments[arguments.startIndex + 1]
let suffix = arguments.count == 3 ? arguments[arguments.startIndex + 2] : ""

guard let contents = FileManager.default.contents(atPath: versionPath),
      let text = String(data: contents, encoding: .utf8) else {
    fail("cannot read \(versionPath)")
}
let release = text.trimmingCharacters(in: .whitespacesAndNewlines)
guard release.wholeMatch(of: releasePattern) != nil else {
    fail("\(versionPath) must hold one MAJOR.MINOR.PATCH line, not '\(release)'")
}
guard suffix.wholeMatch(of: suffixPattern) != nil else {
    fail("version suffix '\(suffix)' must be dot-separated letters and digits, as in '.dirty.3ce0537'")
}

let source = """
    // Generated from VERSION by the VersionConstant plugin; do not edit.
    enum BuildVersion {
        /// The release in VERSION, plus what scripts/package adds for a dirty tree.
        static let string = "\(release)\(suffix)"
    }

    """
// Rewrite only on change, so an unchanged version recompiles nothing.
if FileManager.default.contents(atPath: outputPath) != Data(source.utf8) {
    do {
        try Data(source.utf8).write(to: URL(fileURLWithPath: outputPath), options: .atomic)
    } catch {
        fail("cannot write \(outputPath): \(error.localizedDescription)")
    }
}
