import Foundation

extension NetworkNamespace {
    /// GET inside the namespace with curl; nil when the server does not answer 2xx (yet).
    func httpGet(_ url: String, query: [String: String] = [:], maxTime: Int = 5) -> String? {
        var arguments = ["curl", "-sf", "--max-time", "\(maxTime)", url]
        if !query.isEmpty {
            arguments += ["-G"] + query.sorted { $0.key < $1.key }.flatMap { ["--data-urlencode", "\($0.key)=\($0.value)"] }
        }
        let output = run(arguments, timeout: TimeInterval(maxTime + 5))
        return output.status == 0 ? output.stdout : nil
    }
}
