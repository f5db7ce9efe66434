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
