import XCTest
@testable import SwiftPrune
#if canImport(Glibc)
import Glibc
#endif

final class JSONValueTests: XCTestCase {
    func testParsesEveryKind() throws {
        let value = try JSONValue.parse(#" {"a": [1, -2.5e3, true, false, null], "b": "x\"\\\/\n\u00e9\ud83d\ude00", "c": {}} "#)
        XCTAssertEqual(value, .object([
            ("a", .array([.number("1"), .number("-2.5e3"), .bool(true), .bool(false), .null])),
            ("b", .string("x\"\\/\né😀")),
            ("c", .object([])),
        ]))
    }

    func testKeepsKeyOrder() throws {
        guard case .object(let members) = try JSONValue.parse(#"{"z": 1, "a": 2, "m": 3}"#) else { return XCTFail() }
        XCTAssertEqual(members.map(\.0), ["z", "a", "m"])
    }

    func testRejectsMalformedInput() {
        let bad = [#"{"a": 1,}"#, #"[1, 2,]"#, #"{"a": 1, "a": 2}"#, "01", "1.", "1e", "-", "\"\u{01}\"", #""\ud800""#,
                   #""\udc00""#, #""\x""#, "tru", "nul", "{", "[", "\"abc", "1 2", "", "{\"a\" 1}", #"{1: 2}"#]
        for text in bad {
            XCTAssertThrowsError(try JSONValue.parse(text), text)
        }
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        XCTAssertThrowsError(try JSONValue.parse(deep))
    }

    func testRejectsInvalidUTF8() {
        let bytes: [UInt8] = [0x22, 0xFF, 0x22]
        let parsed = bytes.withUnsafeBufferPointer { buffer in Result { try JSONValue.parse(buffer) } }
        XCTAssertThrowsError(try parsed.get())
    }

    func testIntegers() throws {
        XCTAssertEqual(try JSONValue.parse("123").nonNegativeInteger, 123)
        XCTAssertNil(try JSONValue.parse("-1").nonNegativeInteger)
        XCTAssertNil(try JSONValue.parse("1.0").nonNegativeInteger)
        XCTAssertNil(try JSONValue.parse("1e3").nonNegativeInteger)
        XCTAssertNil(try JSONValue.parse("99999999999999999999").nonNegativeInteger)
        XCTAssertNil(JSONValue.string("1").nonNegativeInteger)
    }

    func testStringEscapingRoundTrips() throws {
        let text = "quote \" backslash \\ newline \n tab \t bell \u{07} é"
        var out: [UInt8] = []
        appendJSONString(text, to: &out)
        XCTAssertEqual(try JSONValue.parse(String(decoding: out, as: UTF8.self)), .string(text))
    }
}

final class SafetensorsTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        guard let made = makeTemporaryDirectory(prefix: "swiftprune-tests") else { throw XCTSkip("mkdtemp failed") }
        directory = made
    }

    override func tearDown() { removeTemporaryDirectory(directory) }

    func file(_ bytes: [UInt8], name: String = "t.safetensors") -> String {
        let path = "\(directory)/\(name)"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        return path
    }

    func raw(_ header: String, data: [UInt8] = []) -> [UInt8] {
        let json = Array(header.utf8)
        var out: [UInt8] = []
        var n = UInt64(json.count)
        for _ in 0 ..< 8 { out.append(UInt8(truncatingIfNeeded: n)); n >>= 8 }
        return out + json + data
    }

    func testWriteThenRead() throws {
        let path = "\(directory)/m.safetensors"
        let writer = try SafetensorsWriter(path: path)
        let a: [Float] = [1, 2, 3, 4, 5, 6]
        let b: [Int64] = [7]
        try a.withUnsafeBytes { try writer.add(name: "a", dtype: .float32, shape: [2, 3], bytes: $0) }
        try b.withUnsafeBytes { try writer.add(name: "b", dtype: .int64, shape: [], bytes: $0) }
        try writer.add(name: "empty", dtype: .float16, shape: [0, 4], bytes: UnsafeRawBufferPointer(start: nil, count: 0))
        try writer.setMetadata("format", "pt")
        try writer.commit()

        let file = try SafetensorsFile(path: path)
        XCTAssertEqual(file.entries.map(\.name), ["a", "b", "empty"])
        XCTAssertEqual(file.entries[0].shape, [2, 3])
        XCTAssertEqual(file.entries[1].dtype, .int64)
        XCTAssertEqual(file.header.metadata.map(\.0), ["format"])
        XCTAssertEqual(file.header.dataStart % 8, 0)
        XCTAssertEqual(Array(try file.tensorBytes(0).bindMemory(to: Float.self)), a)
        XCTAssertEqual(try file.tensorBytes(1).loadUnaligned(as: Int64.self), 7)
        XCTAssertEqual(try file.tensorBytes(2).count, 0)
        try file.release(0)
        XCTAssertEqual(Array(try file.tensorBytes(0).bindMemory(to: Float.self)), a)
        XCTAssertThrowsError(try file.tensorBytes(3))
    }

    func testWriterRejectsBadTensors() throws {
        let path = "\(directory)/w.safetensors"
        let writer = try SafetensorsWriter(path: path)
        let a: [Float] = [1, 2]
        try a.withUnsafeBytes { bytes in
            XCTAssertThrowsError(try writer.add(name: "a", dtype: .float32, shape: [3], bytes: bytes))
            XCTAssertThrowsError(try writer.add(name: "a", dtype: .float32, shape: [-2], bytes: bytes))
            XCTAssertThrowsError(try writer.add(name: "__metadata__", dtype: .float32, shape: [2], bytes: bytes))
            try writer.add(name: "a", dtype: .float32, shape: [2], bytes: bytes)
            XCTAssertThrowsError(try writer.add(name: "a", dtype: .float32, shape: [2], bytes: bytes))
        }
        writer.discard()
        XCTAssertThrowsError(try writer.commit())
        XCTAssertNotEqual(access(path, F_OK), 0)  // nothing written
    }

    func testMalformedFilesThrow() {
        let f32 = #""dtype": "F32", "shape": [2]"#
        let cases: [[UInt8]] = [
            [1, 2, 3],
            raw(#"{"a": {\#(f32), "data_offsets": [0, 8]}}"#, data: [0, 0, 0, 0]),
            raw(#"{"a": {\#(f32), "data_offsets": [0, 8]}}"#, data: Array(repeating: 0, count: 9)),
            raw(#"{"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 8]}}"#, data: Array(repeating: 0, count: 8)),
            raw(#"{"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}"#, data: Array(repeating: 0, count: 8)),
            raw(#"{"a": {\#(f32), "data_offsets": [0, 8]}, "b": {\#(f32), "data_offsets": [4, 12]}}"#,
                data: Array(repeating: 0, count: 12)),
            raw(#"{"a": {\#(f32), "data_offsets": [0, 8]}"#, data: Array(repeating: 0, count: 8)),
            raw("[]"),
        ]
        for (i, bytes) in cases.enumerated() {
            XCTAssertThrowsError(try SafetensorsFile(path: file(bytes)), "case \(i)")
        }
        var huge: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0x80]
        huge += Array("{}".utf8)
        XCTAssertThrowsError(try SafetensorsFile(path: file(huge)))
        XCTAssertThrowsError(try SafetensorsFile(path: "\(directory)/missing"))
        XCTAssertThrowsError(try SafetensorsFile(path: directory))
    }

    func testAcceptsPaddedHeaderAndEmptyFile() throws {
        let header = #"{"a": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]}}     "#
        let file = try SafetensorsFile(path: file(raw(header, data: [1, 2, 3])))
        XCTAssertEqual(Array(try file.tensorBytes(0)), [1, 2, 3])
        let empty = try SafetensorsFile(path: self.file(raw("{}")))
        XCTAssertTrue(empty.entries.isEmpty)
    }

    /// File problems are `.system` errors carrying the errno (the C ABI's SP_ERR_OS), so Python
    /// raises FileNotFoundError / IsADirectoryError; other non-regular files stay `.invalidValue`.
    func testFileProblemsAreSystemErrorsWithErrno() {
        for (path, code) in [("\(directory)/missing.safetensors", ENOENT), (directory, EISDIR)] {
            XCTAssertThrowsError(try SafetensorsFile(path: path)) { error in
                XCTAssertEqual((error as? SwiftPruneError)?.kind, .system, path)
                XCTAssertEqual((error as? SwiftPruneError)?.code, code, path)
            }
        }
        XCTAssertThrowsError(try SafetensorsFile(path: "/dev/null")) { error in
            XCTAssertEqual((error as? SwiftPruneError)?.kind, .invalidValue)
            XCTAssertEqual((error as? SwiftPruneError)?.code, 0)
        }
    }
}
