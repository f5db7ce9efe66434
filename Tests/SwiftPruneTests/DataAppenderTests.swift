import XCTest
@testable import SwiftPrune
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The safetensors writer's data section, written past the page cache (`O_DIRECT`),
/// through the buffered fallback, and through a direct write the kernel refuses
/// part-way (misaligned on purpose): the files must hold exactly the tensors'
/// bytes behind the header, and be byte-for-byte the same in every mode.
final class DataAppenderTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        guard let made = makeTemporaryDirectory(prefix: "swiftprune-appender") else { throw XCTSkip("mkdtemp failed") }
        directory = made
    }

    override func tearDown() {
        DataAppender.allowDirect = true
        DataAppender.alignment = 4096
        removeTemporaryDirectory(directory)
    }

    /// Tensor sizes that end inside, exactly at and just past a buffer, and a tiny one.
    let sizes = [5, DataAppender.chunk - 3, DataAppender.chunk + 4096, (3 << 20) + 1, 0, 7]

    func tensors() -> [[UInt8]] {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        return sizes.map { count in
            (0 ..< count).map { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return UInt8(truncatingIfNeeded: state >> 56)
            }
        }
    }

    func save(_ name: String, reserve: Int, _ data: [[UInt8]]) throws -> [UInt8] {
        let path = "\(directory)/\(name)"
        let writer = try SafetensorsWriter(path: path, headerReserve: reserve)
        for (i, bytes) in data.enumerated() {
            try bytes.withUnsafeBytes { try writer.add(name: "t\(i)", dtype: .uint8, shape: [bytes.count], bytes: $0) }
        }
        try writer.setMetadata("k", "v")
        try writer.commit()
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let got = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard got > 0 else { break }
            out += chunk[0 ..< got]
        }
        return out
    }

    /// The file is 8 bytes of length, the header, then every tensor's bytes in order, nothing more.
    func assertLayout(_ file: [UInt8], _ data: [[UInt8]], _ label: String) {
        guard file.count >= 8 else { return XCTFail("\(label): file of \(file.count) bytes") }
        let n = file[0 ..< 8].reversed().reduce(0) { $0 << 8 | Int($1) }
        XCTAssertEqual((8 + n) % 8, 0, label)
        let expected = data.flatMap { $0 }
        XCTAssertEqual(file.count, 8 + n + expected.count, label)
        XCTAssert(file[(8 + n)...].elementsEqual(expected), "\(label): data section differs")
        XCTAssertEqual(file[8], UInt8(ascii: "{"), label)
    }

    func testDirectBufferedAndRefusedWritesGiveTheSameFile() throws {
        let data = tensors()
        // Default reserve; none (header written into a second file); more than a buffer
        // (data moved down); a misaligned data start (with alignment 256 below: refused).
        for reserve in [4088, 0, 9_000_000, 4344] {
            DataAppender.allowDirect = false
            let buffered = try save("b\(reserve).safetensors", reserve: reserve, data)
            assertLayout(buffered, data, "buffered, reserve \(reserve)")
            DataAppender.allowDirect = true
            let direct = try save("d\(reserve).safetensors", reserve: reserve, data)
            assertLayout(direct, data, "direct, reserve \(reserve)")
            XCTAssert(direct == buffered, "reserve \(reserve): direct and buffered files differ")
            DataAppender.alignment = 256  // offsets that are multiples of 256 only: the kernel refuses odd ones
            let before = DataAppender.refusals.load(ordering: .relaxed)
            let refused = try save("r\(reserve).safetensors", reserve: reserve, data)
            DataAppender.alignment = 4096
            if reserve == 4344 && enforcesDirectAlignment(in: directory) {
                XCTAssertGreaterThan(DataAppender.refusals.load(ordering: .relaxed), before, "the misaligned write was not refused")
            }
            assertLayout(refused, data, "refused, reserve \(reserve)")
            XCTAssert(refused == buffered, "reserve \(reserve): refused-direct and buffered files differ")
        }
        var names: [String] = []
        if let stream = opendir(directory) {
            while let entry = readdir(stream) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(stream)
        }
        XCTAssertEqual(names.count, 12, "temporary files left: \(names.sorted())")
    }

    func testDiscardedWriterLeavesNothing() throws {
        let path = "\(directory)/gone.safetensors"
        let writer = try SafetensorsWriter(path: path)
        let data = tensors()
        for (i, bytes) in data.enumerated() {
            try bytes.withUnsafeBytes { try writer.add(name: "t\(i)", dtype: .uint8, shape: [bytes.count], bytes: $0) }
        }
        writer.discard()
        XCTAssertNotEqual(access(path, F_OK), 0)
        XCTAssertThrowsError(try writer.commit())
    }
}
