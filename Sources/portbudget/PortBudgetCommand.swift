import ArgumentParser
import Glibc
import Logging
import PortBudgetLinux

@main
struct PortBudgetCommand: AsyncParsableCommand {
    /// From the VERSION file, through the VersionConstant build-tool plugin.
    static let version = BuildVersion.string

    static let configuration = CommandConfiguration(
        commandName: "portbudget",
        abstract: "Sees ephemeral-port exhaustion coming, per destination and host-wide.",
        version: version,
        subcommands: [CheckCommand.self, ServeCommand.self, TextfileCommand.self, TraceCommand.self],
        defaultSubcommand: nil)

    /// Exit statuses for command lines the agent cannot run: `check` follows
    /// the Nagios plugin convention (3, UNKNOWN); the long-running commands use 2.
    static func usageExitCode(for arguments: [String]) -> Int32 {
        arguments.first == "check" ? 3 : 2
    }

    static func main() async {
        HeapReleaser.configureAllocator()
        let arguments = Array(CommandLine.arguments.dropFirst())
        do {
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let exit as ExitCode {
            // A command's own status (check's verdict): ArgumentParser's
            // exitCode(for:) would first build the command's whole help
            // text, most of a millisecond, to print nothing.
            Glibc.exit(exit.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success || error is CleanExit {
                exit(withError: error)
            }
            if code == .validationFailure {
                // One line naming what was wrong; --help has the rest.
                let message = oneLine(self.message(for: error))
                printError("portbudget: \(message) (see 'portbudget --help')")
                Glibc.exit(usageExitCode(for: arguments))
            }
            printError("portbudget: \(error)")
            Glibc.exit(usageExitCode(for: arguments) == 3 ? 3 : 1)
        }
    }
}

/// ArgumentParser's message on one line: the first line, with a list of
/// choices that follows it ("Please provide one of the following:" then
/// "- 'x'" lines) folded in, so a wrong value still shows what is right.
func oneLine(_ message: String) -> String {
    let lines = message.split(separator: "\n").map { String($0.drop { $0 == " " }) }
    guard var first = lines.first else { return "invalid arguments" }
    let choices = lines.dropFirst().prefix { $0.hasPrefix("- ") }.map { $0.dropFirst(2) }
    if !choices.isEmpty { first += " " + choices.joined(separator: ", ") }
    return first
}

/// Logs to standard error; only `main` builds loggers (libraries take one).
func makeLogger(_ label: String, level: Logger.Level) -> Logger {
    var logger = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
    logger.logLevel = level
    return logger
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Writes one line to standard error, unbuffered.
func printError(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
