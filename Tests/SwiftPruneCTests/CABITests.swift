import CSwiftPrune
import XCTest
@testable import SwiftPruneC

/// The C ABI as a C caller sees it: statuses, last-error messages, NULLs.
final class CABITests: XCTestCase {
    func testVersionIsAString() {
        let version = String(cString: sp_version())
        XCTAssertFalse(version.isEmpty)
        XCTAssertEqual(version.split(separator: ".").count, 3)
    }

    func testMaskThroughTheABI() {
        let w: [Float] = [0.5, -3, 0.1, 2]
        var mask = [Bool](repeating: false, count: 4)
        XCTAssertEqual(sp_magnitude_mask_f32(w, 4, 0.5, &mask), SP_OK)
        XCTAssertEqual(mask, [false, true, false, true])
    }

    func testErrorsCarryStatusAndMessage() {
        let w: [Double] = [1, .nan]
        var mask = [Bool](repeating: false, count: 2)
        XCTAssertEqual(sp_magnitude_mask_f64(w, 2, 0.5, &mask), SP_ERR_VALUE)
        XCTAssertTrue(String(cString: sp_last_error()).contains("NaN"))
        XCTAssertEqual(sp_magnitude_mask_f64(w, 2, 2.0, &mask), SP_ERR_VALUE)
        XCTAssertTrue(String(cString: sp_last_error()).contains("sparsity"))
        XCTAssertEqual(sp_magnitude_mask_f32(nil, 3, 0.5, nil), SP_ERR_VALUE)
        XCTAssertEqual(sp_magnitude_mask_f32(nil, -1, 0.5, nil), SP_ERR_VALUE)
        XCTAssertEqual(sp_magnitude_mask_f32(nil, 0, 0.5, nil), SP_OK)
        XCTAssertEqual(sp_set_num_threads(-2), SP_ERR_VALUE)
    }

    func testThreadsRoundTrip() {
        XCTAssertEqual(sp_set_num_threads(2), SP_OK)
        XCTAssertEqual(sp_get_num_threads(), 2)
        XCTAssertEqual(sp_set_num_threads(0), SP_OK)
        XCTAssertGreaterThanOrEqual(sp_get_num_threads(), 1)
    }

    func testExportsMatchTheHeader() {
        // Compiling SwiftPruneC is the check; calling the functions keeps them honest.
        checkLibrarySignatures()
        checkPruningSignatures()
        checkCPUSignatures()
    }
}
