import CSwiftPrune
import XCTest
@testable import SwiftPruneC

/// The quantization section of the C ABI as a C caller sees it.
final class QuantizationCABITests: XCTestCase {
    func testQuantizeAndDequantizeThroughTheABI() {
        let w: [Float] = [-1, 0, 0.5, 1, 2, -4]
        let shape: [Int64] = [2, 3]
        var scaleShape = [Int64](repeating: 0, count: 2)
        XCTAssertEqual(sp_quant_scale_shape(shape, 2, true, 0, 0, &scaleShape), SP_OK)
        XCTAssertEqual(scaleShape, [2, 1])
        var values = [Int8](repeating: 0, count: 6)
        var scales = [Float](repeating: 0, count: 2)
        var zeros = [Int8](repeating: 9, count: 2)
        XCTAssertEqual(sp_quant_quantize_f32(w, shape, 2, 8, true, true, 0, 0, SP_CALIBRATION_MINMAX, 99,
                                             &values, &scales, &zeros, 2), SP_OK)
        XCTAssertEqual(values, [-127, 0, 64, 32, 64, -127])
        XCTAssertEqual(zeros, [0, 0])
        var out = [Float](repeating: 0, count: 6)
        XCTAssertEqual(sp_quant_dequantize(values, true, shape, 2, true, 0, 0, scales, zeros, 2, &out), SP_OK)
        XCTAssertEqual(out[3], 32 * 4 / 127)
    }

    func testErrors() {
        let w: [Float] = [1, 2, 3, 4]
        let shape: [Int64] = [2, 2]
        var values = [Int8](repeating: 0, count: 4)
        var scales = [Float](repeating: 0, count: 1)
        var zeros = [Int8](repeating: 0, count: 1)
        XCTAssertEqual(sp_quant_quantize_f32(w, shape, 2, 9, true, false, 0, 0, 0, 0, &values, &scales, &zeros, 1),
                       SP_ERR_VALUE)
        XCTAssertTrue(String(cString: sp_last_error()).contains("bits"))
        XCTAssertEqual(sp_quant_quantize_f32(w, shape, 2, 8, true, true, 5, 0, 0, 0, &values, &scales, &zeros, 1),
                       SP_ERR_VALUE)
        XCTAssertTrue(String(cString: sp_last_error()).contains("axis"))
        XCTAssertEqual(sp_quant_quantize_f32(w, shape, 2, 8, true, false, 0, 0, 0, 0, &values, &scales, &zeros, 3),
                       SP_ERR_VALUE)
        XCTAssertEqual(sp_quant_quantize_f32(nil, shape, 2, 8, true, false, 0, 0, 0, 0, &values, &scales, &zeros, 1),
                       SP_ERR_VALUE)
        XCTAssertEqual(sp_cluster_fit_f32(w, 4, 0, 0, 10, 0, nil, nil), SP_ERR_VALUE)
        var cast = [UInt16](repeating: 0, count: 4)
        XCTAssertEqual(sp_cast_bfloat16_f32(w, 4, &cast), SP_OK)
        XCTAssertEqual(cast, [0x3F80, 0x4000, 0x4040, 0x4080])
    }

    func testExportsMatchTheHeader() {
        checkQuantizationSignatures()
    }
}
