import CSwiftPrune
import SwiftPruneC
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The weight-file functions of swiftprune.h, called as C callers call them.
final class IOCABITests: XCTestCase {
    func testWriteReadThroughTheCABI() throws {
        let path = "/tmp/swiftprune-cabi-\(getpid()).safetensors"
        defer { unlink(path) }
        var writer: OpaquePointer?
        XCTAssertEqual(sp_safetensors_writer_create(path, 256, &writer), SP_OK)
        let values: [Float] = [1.5, -2, 3]
        let shape: [Int64] = [3]
        let status = "w".withCString { name in
            "F32".withCString { dtype in
                shape.withUnsafeBufferPointer { dims in
                    values.withUnsafeBytes { data in
                        var record = sp_tensor_record(name: name, name_length: 1, dtype: dtype, ndim: 1,
                                                      shape: dims.baseAddress, data: data.baseAddress,
                                                      nbytes: Int64(data.count))
                        return sp_safetensors_writer_add(writer, &record)
                    }
                }
            }
        }
        XCTAssertEqual(status, SP_OK)
        XCTAssertEqual(sp_safetensors_writer_set_metadata(writer, "k", 1, "v", 1), SP_OK)
        XCTAssertEqual(sp_safetensors_writer_commit(writer), SP_OK)
        XCTAssertEqual(sp_safetensors_writer_commit(writer), SP_ERR_VALUE)  // closed
        sp_safetensors_writer_free(writer)

        var file: OpaquePointer?
        XCTAssertEqual(sp_safetensors_open(path, &file), SP_OK)
        defer { sp_safetensors_close(file) }
        XCTAssertEqual(sp_safetensors_tensor_count(file), 1)
        var record = sp_tensor_record()
        XCTAssertEqual(sp_safetensors_tensor(file, 0, &record), SP_OK)
        XCTAssertEqual(String(cString: record.name), "w")
        XCTAssertEqual(String(cString: record.dtype), "F32")
        XCTAssertEqual(record.ndim, 1)
        XCTAssertEqual(record.shape[0], 3)
        XCTAssertEqual(record.nbytes, 12)
        let got = UnsafeRawBufferPointer(start: record.data, count: 12)
        XCTAssertEqual((0 ..< 3).map { got.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }, values)
        XCTAssertEqual(sp_safetensors_tensor(file, 1, &record), SP_ERR_VALUE)
        XCTAssertEqual(sp_safetensors_tensor(file, -1, &record), SP_ERR_VALUE)
        XCTAssertEqual(sp_safetensors_metadata_count(file), 1)
        var key: UnsafePointer<CChar>?, value: UnsafePointer<CChar>?
        var keyLength: Int64 = 0, valueLength: Int64 = 0
        XCTAssertEqual(sp_safetensors_metadata(file, 0, &key, &keyLength, &value, &valueLength), SP_OK)
        XCTAssertEqual(String(cString: key!), "k")
        XCTAssertEqual(valueLength, 1)
        XCTAssertEqual(sp_safetensors_release(file, 0), SP_OK)
        XCTAssertEqual(sp_safetensors_release(file, 5), SP_ERR_VALUE)
    }

    func testNullsAndMissingFiles() {
        var file: OpaquePointer?
        XCTAssertEqual(sp_safetensors_open(nil, &file), SP_ERR_VALUE)
        XCTAssertEqual(sp_safetensors_open("/nonexistent/x.safetensors", &file), SP_ERR_OS)
        XCTAssertTrue(String(cString: sp_last_error()).contains("No such file"))
        XCTAssertEqual(sp_last_errno(), ENOENT)
        XCTAssertEqual(sp_safetensors_tensor_count(nil), 0)
        XCTAssertEqual(sp_safetensors_tensor(nil, 0, nil), SP_ERR_VALUE)
        XCTAssertEqual(sp_safetensors_writer_add(nil, nil), SP_ERR_VALUE)
        sp_safetensors_close(nil)
        sp_safetensors_writer_free(nil)
    }
}
