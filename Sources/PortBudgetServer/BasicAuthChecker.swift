import CCrypt
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Checks basic-auth credentials against `basic_auth_users`' bcrypt hashes.
///
/// bcrypt is slow on purpose (cost 10: about 70 ms of one core), so it is
/// kept from eating the CPU a scrape needs: checks run one at a time on a
/// thread of their own at a lower priority (nice `checkerNiceness`), never on
/// an event loop or the threads collections run on, and at most
/// `maximumWaitingChecks` wait — beyond that a request is answered at once
/// with 503, unchecked. Credentials that passed are remembered (at most
/// `maximumRemembered` of them, as the toolkit caches them), so a scraper
/// pays bcrypt once, and a flood of wrong passwords queues behind nothing it needs.
/// Only successes are remembered: wrong passwords cannot crowd out a scraper's entry.
final class BasicAuthChecker: Sendable {
    enum Verdict: Sendable, Equatable {
        case allowed
        case denied
        /// Too many checks waiting; the credentials were not checked.
        case busy
    }

    /// Checks waiting for the bcrypt queue, beyond which requests get 503 unchecked.
    static let maximumWaitingChecks = 8
    /// The password-check thread's nice value: a scrape's collection and
    /// answer get the CPU first when both want it.
    static let checkerNiceness: Int32 = 10
    /// Verified credentials remembered; the oldest is forgotten first.
    static let maximumRemembered = 64
    /// Checked for unknown user names, so that an unknown name costs what a
    /// known one does and timing does not tell which names exist. Cost 10,
    /// the toolkit's default; its password is irrelevant.
    static let decoyHash = "$2b$10$eJztv3xSG9yjdU2n1mJvK.Px.KGiJeSnvINY1w2ZdSE09/zVVXvcG"

    private struct Remembered {
        var user: [UInt8], hash: String, password: [UInt8]
    }

    private struct State {
        var waiting = 0
        var remembered: [Remembered] = []
    }

    private let thread: NIOThreadPool
    private let state = NIOLockedValueBox(State())

    init() {
        thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        thread.submit { _ in
            _ = portbudget_nice_calling_thread(Self.checkerNiceness)
        }
    }

    deinit {
        thread.shutdownGracefully { _ in }
    }

    /// Checks `authorization` (the header's value, or nil) against `users`.
    func check(authorization: String?, users: [String: String], on eventLoop: any EventLoop) -> EventLoopFuture<Verdict> {
        guard let (user, password) = Self.credentials(authorization) else { return eventLoop.makeSucceededFuture(.denied) }
        let known = users[String(decoding: user, as: UTF8.self)]
        let hash = known ?? Self.decoyHash
        let admitted: Bool? = state.withLockedValue { state in
            if let known, state.remembered.contains(where: {
                $0.hash == known && Self.constantTimeEqual($0.user, user) && Self.constantTimeEqual($0.password, password)
            }) { return true }
            guard state.waiting < Self.maximumWaitingChecks else { return false }
            state.waiting += 1
            return nil
        }
        if admitted == true { return eventLoop.makeSucceededFuture(.allowed) }
        if admitted == false { return eventLoop.makeSucceededFuture(.busy) }
        let promise = eventLoop.makePromise(of: Verdict.self)
        thread.submit { [state] _ in
            let matches = Self.bcryptMatches(password: password, hash: hash) && known != nil
            state.withLockedValue { state in
                state.waiting -= 1
                if matches {
                    if state.remembered.count >= Self.maximumRemembered { state.remembered.removeFirst() }
                    state.remembered.append(Remembered(user: user, hash: hash, password: password))
                }
            }
            promise.succeed(matches ? .allowed : .denied)
        }
        return promise.futureResult
    }

    /// User and password of a `Basic` Authorization value; nil when it is
    /// absent or malformed (the toolkit's rules: base64, a colon).
    static func credentials(_ authorization: String?) -> (user: [UInt8], password: [UInt8])? {
        guard let authorization else { return nil }
        let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "basic",
              let decoded = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces)),
              let colon = decoded.firstIndex(of: UInt8(ascii: ":"))
        else { return nil }
        let bytes = [UInt8](decoded)
        let split = colon - decoded.startIndex
        return (Array(bytes[..<split]), Array(bytes[(split + 1)...]))
    }

    /// Whether `password` hashes to `hash` (libxcrypt's crypt_r, which knows
    /// $2a$, $2b$ and $2y$). The result is compared in constant time.
    static func bcryptMatches(password: [UInt8], hash: String) -> Bool {
        // crypt takes a C string: a password with a NUL would be cut short there.
        guard !password.contains(0) else { return false }
        let data = UnsafeMutablePointer<crypt_data>.allocate(capacity: 1)
        defer { data.deallocate() }
        memset(data, 0, MemoryLayout<crypt_data>.size)
        let computed: [UInt8]? = (password + [0]).withUnsafeBufferPointer { passwordBytes in
            passwordBytes.baseAddress!.withMemoryRebound(to: CChar.self, capacity: passwordBytes.count) { cPassword in
                guard let out = crypt_r(cPassword, hash, data) else { return nil }
                return Array(String(cString: out).utf8)
            }
        }
        // libxcrypt answers a hash it cannot use with a string starting with '*'.
        guard let computed, computed.first != UInt8(ascii: "*") else { return false }
        return constantTimeEqual(computed, Array(hash.utf8))
    }

    /// Equal contents, in time that depends on the lengths only.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        let length = max(a.count, b.count)
        for i in 0..<length {
            difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return difference == 0
    }
}
