import CSwiftPrune
import SwiftPruneC
import Testing

@Suite struct PruningCABITests {
    @Test func nmMaskThroughTheCABI() {
        let w: [Float] = [0.1, -0.4, 0.3, 0.2, 5, 1, -2, 0]
        var mask = [Bool](repeating: false, count: 8)
        let shape: [Int64] = [2, 4]
        let status = sp_nm_mask_f32(w, shape, 2, 2, 4, -1, &mask)
        #expect(status == SP_OK)
        #expect(mask == [false, true, true, false, true, false, true, false])
    }

    @Test func badAxisIsAValueErrorWithAMessage() {
        let w: [Float] = [1, 2, 3, 4]
        var mask = [Bool](repeating: false, count: 4)
        let shape: [Int64] = [4]
        #expect(sp_nm_mask_f32(w, shape, 1, 2, 4, 3, &mask) == SP_ERR_VALUE)
        #expect(String(cString: sp_last_error()).contains("axis"))
    }
}

@Suite struct PruningCABIMoreTests {
    @Test func globalMasksThroughPointerArrays() {
        let a: [Float] = [0.1, 5, -0.2, 3]
        let b: [Float] = [4, -0.05, 1]
        var maskA = [Bool](repeating: false, count: 4), maskB = [Bool](repeating: false, count: 3)
        let sizes: [Int64] = [4, 3]
        let status = a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                maskA.withUnsafeMutableBufferPointer { ma in
                    maskB.withUnsafeMutableBufferPointer { mb in
                        let inputs: [UnsafePointer<Float>?] = [pa.baseAddress, pb.baseAddress]
                        let outputs: [UnsafeMutablePointer<Bool>?] = [ma.baseAddress, mb.baseAddress]
                        return sp_global_magnitude_masks_f32(inputs, sizes, 2, 3.0 / 7.0, outputs)
                    }
                }
            }
        }
        #expect(status == SP_OK)
        #expect(maskA == [false, true, false, true])
        #expect(maskB == [true, false, true])
    }

    @Test func statusesForBadArguments() {
        var mask = [Bool](repeating: false, count: 4)
        #expect(sp_random_mask(4, 1.5, 0, &mask) == SP_ERR_VALUE)
        #expect(sp_random_mask(-1, 0.5, 0, &mask) == SP_ERR_VALUE)
        #expect(sp_random_mask(4, 0.5, 0, nil) == SP_ERR_VALUE)
        let w: [Double] = [1, 2, 3, 4]
        let shape: [Int64] = [2, 2]
        #expect(sp_structured_mask_f64(w, shape, 2, 0.5, 0, 3, &mask) == SP_ERR_VALUE)
        #expect(sp_block_mask_f64(w, 2, 2, 0.5, 0, 1, &mask) == SP_ERR_VALUE)
        let negative: [Int64] = [-2, -2]
        #expect(sp_nm_mask_f64(w, negative, 2, 1, 2, 0, &mask) == SP_ERR_VALUE)
        var out = [Double](repeating: 0, count: 4)
        #expect(sp_sparsegpt_f64(w, 2, 2, w, 2, 0.5, 0, 0, 0, 0.01, &out) == SP_ERR_VALUE)
        #expect(sp_wanda_mask_f64(w, 2, 2, w, 2, 2.0, &mask) == SP_ERR_VALUE)
        #expect(String(cString: sp_last_error()).contains("sparsity"))
    }
}
