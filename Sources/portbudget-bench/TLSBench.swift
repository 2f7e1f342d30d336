import Glibc

/// `portbudget-bench tls`: what `--web.config.file` costs a scraper. Two
/// `serve` processes on host loopback, one plain and one with TLS (and a
/// second TLS one with basic auth), scraped by one curl per round that keeps
/// its connection alive across `--scrapes` requests, as Prometheus does. The
/// first request of each round (connect, handshake, the password check) is
/// reported apart from the kept-alive ones. Rounds interleave the servers, so
/// drift in the host's socket tables falls on each alike.
struct TLSBench {
    var scrapes = 50
    var rounds = 5
    var binDir = Options.ownDirectory()

    static let usage = """
        usage: portbudget-bench tls [--scrapes N] [--rounds N] [--bin-dir DIR]
        Scrape latency of serve over TLS with keep-alive, against plain HTTP, in one run
        (host loopback, no root needed; needs openssl and curl). Defaults: --scrapes 50 --rounds 5.
        """

    init(_ args: [String]) throws {
        var arguments = BenchArguments(args, usage: Self.usage)
        while let flag = arguments.next() {
            switch flag {
            case "--scrapes":
                guard let n = Int(try arguments.value()), n >= 2 else { throw BenchError("--scrapes takes a number ≥ 2") }
                scrapes = n
            case "--rounds":
                guard let n = Int(try arguments.value()), n >= 1 else { throw BenchError("--rounds takes a number ≥ 1") }
                rounds = n
            case "--bin-dir": binDir = try arguments.value()
            case "-h", "--help": arguments.help()
            default: throw arguments.unknown
            }
        }
    }

    private enum Mode: String, CaseIterable {
        case plain = "plain HTTP", tls = "TLS", tlsBasicAuth = "TLS + basic auth"
    }

    private static let ports: [Mode: UInt16] = [.plain: 19961, .tls: 19962, .tlsBasicAuth: 19963]
    private static let password = "bench-secret"

    func run() throws {
        for tool in ["/usr/bin/openssl", "/usr/bin/curl", "/usr/bin/python3"] where access(tool, X_OK) != 0 {
            throw BenchError("\(tool) not found (scripts/ensure-deps test installs it)")
        }
        let portbudget = binDir + "/portbudget"
        guard access(portbudget, X_OK) == 0 else { throw BenchError("\(portbudget) not found (swift build -c release)") }
        var template = Array("/tmp/pbtlsbench-XXXXXX".utf8CString)
        guard let dirPointer = mkdtemp(&template) else { throw BenchError("mkdtemp: errno \(errno)") }
        let dir = String(cString: dirPointer)
        defer { _ = try? Child.run(["rm", "-rf", dir]) }

        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(dir)/tls.key",
                     "-out", "\(dir)/tls.crt", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        let hashChild = try Child.spawn(["/usr/bin/python3", "-W", "ignore", "-c",
                                         "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1024)))",
                                         Self.password], stdout: .pipe)
        let hash = hashChild.readAll().filter { !$0.isWhitespace }
        guard try hashChild.wait().status == 0, hash.hasPrefix("$2") else { throw BenchError("python3 crypt made no bcrypt hash") }
        let tlsConfig = "tls_server_config:\n  cert_file: \(dir)/tls.crt\n  key_file: \(dir)/tls.key\n"
        try writeFile("\(dir)/tls.yml", tlsConfig)
        try writeFile("\(dir)/tls-auth.yml", tlsConfig + "basic_auth_users:\n  bench: \(hash)\n")

        var servers: [Child] = []
        defer { for server in servers { server.terminate(); server.finish(timeout: 5) } }
        for mode in Mode.allCases {
            var argv = [portbudget, "serve", "--listen", "127.0.0.1:\(Self.ports[mode]!)"]
            if mode == .tls { argv += ["--web.config.file", "\(dir)/tls.yml"] }
            if mode == .tlsBasicAuth { argv += ["--web.config.file", "\(dir)/tls-auth.yml"] }
            servers.append(try Child.spawn(argv, quietStderr: true))
        }
        for mode in Mode.allCases {
            let deadline = monotonicSeconds() + 20
            while (try? scrape(mode, count: 1, dir: dir))?.isEmpty != false {
                guard monotonicSeconds() < deadline else { throw BenchError("serve (\(mode.rawValue)) did not answer") }
                usleep(200_000)
            }
        }

        var kept: [Mode: [Double]] = [:], first: [Mode: [Double]] = [:]
        for round in 0..<rounds {
            for k in 0..<Mode.allCases.count {
                let mode = Mode.allCases[(k + round) % Mode.allCases.count]
                let times = try scrape(mode, count: scrapes, dir: dir)
                guard times.count == scrapes else { throw BenchError("\(mode.rawValue): \(times.count) of \(scrapes) scrapes answered") }
                first[mode, default: []].append(times[0])
                kept[mode, default: []] += times.dropFirst()
            }
            log("round \(round + 1) of \(rounds) done")
        }

        var lines = ["Scrape latency of `serve` on loopback, \(rounds) rounds × \(scrapes) scrapes per server, one curl",
                     "keeping its connection alive per round (\(machineDescription()), \(utcDate())):", "",
                     "| server | kept-alive median ms | p90 ms | first request (connect+handshake) median ms |",
                     "|---|---:|---:|---:|"]
        for mode in Mode.allCases {
            let sorted = kept[mode, default: []].sorted()
            let p90 = sorted.isEmpty ? nil : sorted[min(sorted.count - 1, sorted.count * 9 / 10)]
            lines.append("| \(mode.rawValue) | \(Format.ms(median(sorted))) | \(Format.ms(p90)) | \(Format.ms(median(first[mode, default: []]))) |")
        }
        let plain = median(kept[.plain, default: []]), tls = median(kept[.tls, default: []])
        let auth = median(kept[.tlsBasicAuth, default: []])
        lines.append("")
        lines.append("TLS / plain, kept-alive median: \(Format.ratio(tls, plain)); TLS + basic auth / plain: \(Format.ratio(auth, plain))")
        writeAll(1, lines.joined(separator: "\n") + "\n")
    }

    /// One curl over `count` URLs on one kept-alive connection; each transfer's total seconds.
    private func scrape(_ mode: Mode, count: Int, dir: String) throws -> [Double] {
        let port = Self.ports[mode]!
        let scheme = mode == .plain ? "http" : "https"
        var argv = ["/usr/bin/curl", "-s", "-o", "/dev/null", "--compressed", "-w", "%{stderr}%{http_code} %{time_total}\\n",
                    "--max-time", "60", "\(scheme)://127.0.0.1:\(port)/metrics?scrape=[1-\(count)]"]
        if mode != .plain { argv += ["--cacert", "\(dir)/tls.crt"] }
        if mode == .tlsBasicAuth { argv += ["-u", "bench:\(Self.password)"] }
        // curl writes the -w lines to stderr (%{stderr}); swap the streams through a shell-free file.
        let out = "\(dir)/curl-\(mode.hashValue & 0xffff).txt"
        let child = try Child.spawn(["/bin/sh", "-c", "exec \"$0\" \"$@\" 2>\"\(out)\""] + argv)
        guard try child.wait().status == 0 else { return [] }
        return (readFile(out) ?? "").split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count == 2, fields[0] == "200" else { return nil }
            return Double(fields[1])
        }
    }

    private func openssl(_ arguments: [String]) throws {
        guard try Child.run(["/usr/bin/openssl"] + arguments, quietStderr: true).status == 0 else {
            throw BenchError("openssl \(arguments[0]) failed")
        }
    }
}
