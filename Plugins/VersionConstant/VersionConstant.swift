import Foundation
import PackagePlugin

/// Generates `BuildVersion.string` for the target from the VERSION file at the
/// package root, so `--version`, `portbudget_build_info`, the .deb and the image
/// tag share one source. scripts/package sets PORTBUDGET_VERSION_SUFFIX (for
/// example "+dirty.3ce0537") to mark a package built from a modified tree; a
/// plain `swift build` leaves it unset and gets VERSION exactly.
@main
struct VersionConstant: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let versionFile = context.package.directoryURL.appending(path: "VERSION")
        let output = context.pluginWorkDirectoryURL.appending(path: "BuildVersion.swift")
        let suffix = ProcessInfo.processInfo.environment["PORTBUDGET_VERSION_SUFFIX"] ?? ""
        return [
            .buildCommand(
                displayName: "Generating BuildVersion.swift from VERSION",
                executable: try context.tool(named: "GenerateVersionConstant").url,
                // The suffix is an argument, so changing it re-runs the command.
                arguments: [versionFile.path, output.path, suffix],
                inputFiles: [versionFile],
                outputFiles: [output])
        ]
    }
}
