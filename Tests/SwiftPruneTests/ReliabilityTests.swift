import XCTest
@testable import SwiftPrune
#if canImport(Glibc)
import Glibc
#endif

/// Issue 16 in Swift: fallible allocation, read-mode safetensors, overwrite
/// semantics and stale temporary files of the writer.
final class ReliabilityTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        guard let made = makeTemporaryDirectory(prefix: "swiftprune-reliability") else { throw XCTSkip("mkdtemp failed") }
        directory = made
    }

    override func tearDown() { removeTemporaryDirectory(directory) }

    private func names() -> [String] {
        var out: [String] = []
        guard let dir = opendir(directory) else { return out }
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { out.append(name) }
        }
        closedir(dir)
        return out.sorted()
    }

    private func write(_ path: String, _ values: [Float]) throws {
        let writer = try SafetensorsWriter(path: path)
        try values.withUnsafeBytes { try writer.add(name: "w", dtype: .float32, shape: [values.count], bytes: $0) }
        try writer.commit()
    }

    private func read(_ path: String, mapped: Bool = false) throws -> [Float] {
        let file = try SafetensorsFile(path: path, mapped: mapped)
        var out = [Float](repeating: 0, count: file.entries[0].shape[0])
        try out.withUnsafeMutableBytes { try file.read(0, into: $0) }
        return out
    }

    func testRefusedAllocationThrowsOutOfMemory() {
        XCTAssertThrowsError(try FallibleAllocation.allocate(bytes: Int.max / 2)) { error in
            XCTAssertEqual((error as? SwiftPruneError)?.kind, .outOfMemory)
        }
        XCTAssertThrowsError(try FallibleAllocation.allocate(Double.self, count: Int.max / 4)) { error in
            XCTAssertEqual((error as? SwiftPruneError)?.kind, .outOfMemory)  // the byte count overflows
        }
        XCTAssertThrowsError(try [Double](fallibleRepeating: 0, count: 1 << 60))
    }

    func testRefusedScratchThrowsOutOfMemoryAndThePoolStillWorks() throws {
        var ran = false
        XCTAssertThrowsError(try ScratchPool.withFallible(UInt8.self, count: Int.max / 2) { _ in ran = true }) { error in
            XCTAssertEqual((error as? SwiftPruneError)?.kind, .outOfMemory)
        }
        XCTAssertThrowsError(try ScratchPool.withFallible(Double.self, count: Int.max / 4) { _ in ran = true }) { error in
            XCTAssertEqual((error as? SwiftPruneError)?.kind, .outOfMemory)  // the byte count overflows
        }
        XCTAssertFalse(ran)
        let sum = try ScratchPool.withFallible(Int.self, count: 1000) { p -> Int in
            for i in 0 ..< 1000 { p[i] = i }
            return (0 ..< 1000).reduce(0) { $0 + p[$1] }
        }
        XCTAssertEqual(sum, 999 * 1000 / 2)
    }

    func testScratchArrayGrowsAndKeepsItsElements() throws {
        let array = try ScratchArray<Int>(capacity: 2)
        for i in 0 ..< 1000 { array.append(i * 3) }
        XCTAssertEqual(array.count, 1000)
        XCTAssertFalse(array.failed)
        XCTAssertEqual(Array(array.buffer), (0 ..< 1000).map { $0 * 3 })
        XCTAssertNoThrow(try array.check())
    }

    func testReadModeEqualsMappedModeAndSurvivesTruncation() throws {
        let path = "\(directory)/m.safetensors"
        let values = (0 ..< 1000).map { Float($0) * 0.5 }
        try write(path, values)
        XCTAssertEqual(try read(path), values)
        XCTAssertEqual(try read(path, mapped: true), values)
        let file = try SafetensorsFile(path: path, mapped: false)
        XCTAssertFalse(file.isMapped)
        XCTAssertThrowsError(try file.tensorBytes(0))  // no mapping to view
        XCTAssertEqual(truncate(path, 200), 0)
        var out = [Float](repeating: 0, count: 1000)
        XCTAssertThrowsError(try out.withUnsafeMutableBytes { try file.read(0, into: $0) }) { error in
            XCTAssertTrue("\(error)".contains("truncated"), "\(error)")
        }
    }

    func testFIFOIsRefusedWithoutBlocking() throws {
        let path = "\(directory)/pipe.safetensors"
        XCTAssertEqual(mkfifo(path, 0o600), 0)
        for mapped in [false, true] {
            XCTAssertThrowsError(try SafetensorsFile(path: path, mapped: mapped)) { error in
                XCTAssertTrue("\(error)".contains("not a regular file"), "\(error)")
            }
        }
    }

    func testOverwriteKeepsModeAndWritesThroughSymlinks() throws {
        let path = "\(directory)/m.safetensors"
        try write(path, [1, 2, 3])
        XCTAssertEqual(chmod(path, 0o600), 0)
        try write(path, [4, 5])
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
        let link = "\(directory)/link.safetensors"
        XCTAssertEqual(symlink("m.safetensors", link), 0)  // relative target
        try write(link, [7, 8, 9])
        XCTAssertEqual(lstat(link, &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFLNK)
        XCTAssertEqual(try read(path), [7, 8, 9])
        XCTAssertEqual(names(), ["link.safetensors", "m.safetensors"])
    }

    func testStaleTemporariesOfDeadProcessesAreRemoved() throws {
        // A pid that is not running: the largest pid Linux allows is below 2^22.
        let dead = "\(directory)/.m.safetensors.\(Int32.max - 1).3.tmp"
        let alive = "\(directory)/.m.safetensors.\(getppid()).3.tmp"
        let other = "\(directory)/.x.safetensors.\(Int32.max - 1).3.tmp"
        for path in [dead, alive, other] {
            let fd = open(path, O_CREAT | O_WRONLY, 0o644)
            XCTAssertGreaterThanOrEqual(fd, 0)
            close(fd)
        }
        try write("\(directory)/m.safetensors", [1])
        XCTAssertEqual(names(), [".m.safetensors.\(getppid()).3.tmp", ".x.safetensors.\(Int32.max - 1).3.tmp",
                                 "m.safetensors"])
    }
}
