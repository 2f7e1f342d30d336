import Foundation
import Logging
import PortBudgetCore
@testable import PortBudgetLinux
import XCTest

extension NetworkNamespace {
    /// One collection of this namespace by `collectors` through sockets and
    /// files opened inside it, as `--all-namespaces` runs a kept session:
    /// they are made on a thread that enters the namespace, the collection
    /// runs from this one. Returns it and the dump requests it made.
    func collectAsKeptSession(_ collectors: CollectorSet) throws -> (collection: NamespaceCollection, requests: Int) {
        let handle = try NetworkNamespaceHandle(.name(name))
        final class Opened: @unchecked Sendable {
            var sockets: NamespaceSockets?
            var files: PinnedFiles?
            var error: (any Error)?
        }
        let opened = Opened()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { done.signal() }
            do {
                try handle.enterOnThisThread()
                opened.sockets = NamespaceSockets(sockDiag: try SockDiagDumper(), conntrack: nil)
                opened.files = PinnedFiles(procfs: ProcFS(root: "/proc", netOfCallingThread: true))
            } catch {
                opened.error = error
            }
        }
        thread.start()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        if let error = opened.error { throw error }
        let sockets = try XCTUnwrap(opened.sockets), files = try XCTUnwrap(opened.files)
        let context = CollectionContext(procfs: ProcFS(root: "/proc", netOfCallingThread: true, pinned: files),
                                        sockets: sockets, logger: Logger(label: "test"))
        return (collectors.collect(context), sockets.sockDiag.requestsMade)
    }
}
