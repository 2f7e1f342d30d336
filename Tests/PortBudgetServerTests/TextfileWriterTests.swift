import Foundation
import PortBudgetAgent
import PortBudgetServer
import XCTest

final class TextfileWriterTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("pbtextfile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func listing() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
    }

    /// node_exporter reads `*.prom` only: the temporary file must never match.
    func testTemporaryNameIsHiddenFromTheTextfileCollector() {
        XCTAssertTrue(TextfileWriter.temporaryName.hasPrefix("."))
        XCTAssertFalse(TextfileWriter.temporaryName.hasSuffix(".prom"))
        XCTAssertEqual(TextfileWriter.fileName, "portbudget.prom")
    }

    func testWriteLeavesOnlyThePromFile() throws {
        let writer = TextfileWriter(directory: directory.path + "/")
        try writer.checkWritable()
        XCTAssertEqual(try listing(), [])
        try writer.write("a 1\n")
        try writer.write("b 2\n")
        XCTAssertEqual(try listing(), ["portbudget.prom"])
        XCTAssertEqual(try String(contentsOfFile: writer.path, encoding: .utf8), "b 2\n")
        let mode = try FileManager.default.attributesOfItem(atPath: writer.path)[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o644)
    }

    func testMissingDirectoryIsNamed() {
        let missing = directory.appendingPathComponent("nope").path
        XCTAssertThrowsError(try TextfileWriter(directory: missing).checkWritable()) { error in
            XCTAssertEqual("\(error)", "cannot write \(missing): No such file or directory")
        }
    }

    func testAFileIsNotADirectory() throws {
        let file = directory.appendingPathComponent("file")
        try Data().write(to: file)
        XCTAssertThrowsError(try TextfileWriter(directory: file.path).checkWritable()) { error in
            XCTAssertEqual("\(error)", "\(file.path) is not a directory")
        }
    }
}
