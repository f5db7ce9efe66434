import CSwiftPrune
import XCTest
@testable import SwiftPruneC

/// The low-rank and matmul exports as a C caller sees them.
final class FactorizationCABITests: XCTestCase {
    func testSVDThroughTheABI() {
        let w: [Float] = [0, 0, -2, 5, 0, 0]   // 2 x 3
        var u = [Float](repeating: 0, count: 4), s = [Float](repeating: 0, count: 2), vt = [Float](repeating: 0, count: 6)
        XCTAssertEqual(sp_svd_f32(w, 2, 3, &u, &s, &vt), SP_OK)
        XCTAssertEqual(s[0], 5, accuracy: 1e-6)
        XCTAssertEqual(s[1], 2, accuracy: 1e-6)
        let bad: [Double] = [.infinity, 0]
        XCTAssertEqual(sp_svd_f64(bad, 1, 2, &u, &s, &vt), SP_ERR_VALUE)
        XCTAssertTrue(String(cString: sp_last_error()).contains("NaN or Inf"))
        XCTAssertEqual(sp_svd_f32(nil, 2, 3, &u, &s, &vt), SP_ERR_VALUE)
        XCTAssertEqual(sp_svd_f32(nil, -1, 3, nil, nil, nil), SP_ERR_VALUE)
        XCTAssertEqual(sp_svd_f32(nil, 0, 3, nil, nil, nil), SP_OK)
    }

    func testLowRankAndSelectors() {
        var rank: Int64 = -1
        XCTAssertEqual(sp_low_rank_max_rank(SP_SELECT_RATIO, 0.5, 10, 10, &rank), SP_OK)
        XCTAssertEqual(rank, 2)
        XCTAssertEqual(sp_low_rank_max_rank(SP_SELECT_ENERGY, 0.5, 10, 7, &rank), SP_OK)
        XCTAssertEqual(rank, 7)
        XCTAssertEqual(sp_low_rank_max_rank(SP_SELECT_RANK, 2.5, 10, 7, &rank), SP_ERR_VALUE)
        XCTAssertEqual(sp_low_rank_max_rank(9, 1, 10, 7, &rank), SP_ERR_VALUE)
        let w: [Double] = [3, 0, 0, 1]
        var a = [Float](repeating: 0, count: 2), b = [Float](repeating: 0, count: 2)
        XCTAssertEqual(sp_low_rank_f64(w, 2, 2, SP_SELECT_ENERGY, 0.8, SP_LOW_RANK_AUTO, 0, 2, &a, &b, &rank), SP_OK)
        XCTAssertEqual(rank, 1)
        XCTAssertEqual(abs(a[0] * b[0]), 3, accuracy: 1e-6)
        XCTAssertEqual(sp_low_rank_f64(w, 2, 2, SP_SELECT_RANK, 2, 7, 0, 2, &a, &b, &rank), SP_ERR_VALUE)
        XCTAssertEqual(sp_low_rank_f64(w, 2, 2, SP_SELECT_RANK, 2, SP_LOW_RANK_SVD, 0, 1, &a, &b, &rank), SP_ERR_VALUE)
    }

    func testMatmulThroughTheABI() {
        let a: [Float] = [1, 2, 3, 4, 5, 6]        // 2 x 3
        let bT: [Float] = [1, 0, 1, 0, 1, 1]       // B^T (2 x 3) -> B is 3 x 2
        var out = [Float](repeating: .nan, count: 4)
        XCTAssertEqual(sp_matmul_f32(a, false, bT, true, 2, 3, 2, &out), SP_OK)
        XCTAssertEqual(out, [4, 5, 10, 11])
        XCTAssertEqual(sp_matmul_f32(nil, false, nil, false, 2, 3, 2, &out), SP_ERR_VALUE)
    }

    func testExportsMatchTheHeader() {
        checkFactorizationSignatures()
        checkMatmulSignatures()
    }
}
